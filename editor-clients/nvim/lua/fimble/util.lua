-- Small compatibility helpers for Neovim 0.10 .. 0.12.
local M = {}

M.uv = vim.uv or vim.loop

local has_011 = vim.fn.has('nvim-0.11') == 1

function M.has_011()
  return has_011
end

--- Sends a request; returns the request id or nil.
---@param client vim.lsp.Client
function M.request(client, method, params, handler, bufnr)
  local ok, id
  if has_011 then
    ok, id = client:request(method, params, handler, bufnr)
  else
    ok, id = client.request(method, params, handler, bufnr)
  end
  if ok then
    return id
  end
  return nil
end

---@param client vim.lsp.Client
function M.cancel(client, id)
  if not (client and id) then
    return
  end
  pcall(function()
    if has_011 then
      client:cancel_request(id)
    else
      client.cancel_request(id)
    end
  end)
end

---@param client vim.lsp.Client
function M.is_stopped(client)
  if has_011 then
    return client:is_stopped()
  end
  return client.is_stopped()
end

--- Byte index in `line` of the LSP `character` offset (UTF-16 by default), clamped to the line.
---@param line string
---@param character integer
---@param encoding string? 'utf-8' | 'utf-16' | 'utf-32'
function M.byte_col(line, character, encoding)
  encoding = encoding or 'utf-16'
  if character <= 0 then
    return 0
  end
  if encoding == 'utf-8' then
    return math.min(character, #line)
  end
  local ok, col
  if has_011 then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == 'utf-16')
  end
  if not ok or not col then
    return #line
  end
  return math.min(col, #line)
end

--- LSP `character` offset (UTF-16 by default) of byte column `col` in `line`.
function M.lsp_col(line, col, encoding)
  encoding = encoding or 'utf-16'
  col = math.min(col, #line)
  if encoding == 'utf-8' then
    return col
  end
  if has_011 then
    return vim.str_utfindex(line, encoding, col, false)
  end
  local u32, u16 = vim.str_utfindex(line, col)
  return encoding == 'utf-16' and u16 or u32
end

---@param bufnr integer
---@param row integer 0-based
function M.get_line(bufnr, row)
  return vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
end

--- Converts an LSP position to a 0-based (row, byte col) pair in `bufnr`.
function M.pos_to_byte(bufnr, pos, encoding)
  local row = pos.line
  local line_count = vim.api.nvim_buf_line_count(bufnr)
  if row >= line_count then
    local last = line_count - 1
    return last, #M.get_line(bufnr, last)
  end
  return row, M.byte_col(M.get_line(bufnr, row), pos.character, encoding)
end

--- Text of an insertText that may be a plain string or a StringValue snippet.
function M.insert_text(value)
  if type(value) == 'string' then
    return value
  end
  if type(value) == 'table' and type(value.value) == 'string' then
    -- A snippet: drop tabstops and keep placeholder texts.
    local text = value.value
    text = text:gsub('%${%d+:([^}]*)}', '%1'):gsub('%${%d+}', ''):gsub('%$%d+', ''):gsub('\\([$}\\])', '%1')
    return text
  end
  return nil
end

--- Path of Neovim's LSP log (where the server's stderr goes).
function M.lsp_log_path()
  local log = vim.lsp.log
  if log and log.get_filename then
    return log.get_filename()
  end
  return vim.lsp.get_log_path()
end

function M.notify(msg, level)
  vim.schedule(function()
    vim.notify(msg, level or vim.log.levels.INFO, { title = 'fimble' })
  end)
end

return M
