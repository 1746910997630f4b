-- Neovim 0.12+: ghost text comes from the built-in vim.lsp.inline_completion; fimble only wires
-- the keys to it (accept = get(), next/previous = select(), word/line = get{ on_accept = ... }).
local util = require('fimble.util')

local api = vim.api
local M = {}

local function ic()
  return vim.lsp.inline_completion
end

--- Whether the built-in inline completion can be used.
function M.available()
  return vim.fn.has('nvim-0.12') == 1 and type(ic()) == 'table' and type(ic().enable) == 'function'
end

function M.attach(bufnr)
  ic().enable(true, { bufnr = bufnr })
end

function M.detach(bufnr)
  pcall(ic().enable, false, { bufnr = bufnr })
end

local function builtin_namespace()
  return api.nvim_get_namespaces()['nvim.lsp.inline_completion']
end

--- Whether the built-in shows a candidate in `bufnr`.
function M.is_visible(bufnr)
  local ns = builtin_namespace()
  if not ns then
    return false
  end
  return #api.nvim_buf_get_extmarks(bufnr or 0, ns, 0, -1, { limit = 1 }) > 0
end

--- Range (0-based rows, byte cols) of a built-in item, whatever shape this Neovim version gives it.
local function item_range(bufnr, item)
  local r = item.range
  local row, col = unpack(api.nvim_win_get_cursor(0))
  row = row - 1
  if type(r) ~= 'table' then
    return row, col, row, col
  end
  if r.start_row then
    return r.start_row, r.start_col, r.end_row, r.end_col
  end
  if type(r[1]) == 'number' then
    return r[1], r[2], r[3] or r[1], r[4] or r[2]
  end
  if type(r.start) == 'table' and r.start.line then
    local client = item.client_id and vim.lsp.get_client_by_id(item.client_id)
    local enc = client and client.offset_encoding or 'utf-16'
    local srow, scol = util.pos_to_byte(bufnr, r.start, enc)
    local erow, ecol = util.pos_to_byte(bufnr, r['end'], enc)
    return srow, scol, erow, ecol
  end
  return row, col, row, col
end

local function item_text(item)
  local text = item.insert_text or item.insertText or item.value
  if type(text) == 'table' then
    return util.insert_text(text)
  end
  return text
end

--- Inserts the next word / line of `item` at the cursor (accept_word / accept_line).
function M.accept_part(item, kind)
  local bufnr = api.nvim_get_current_buf()
  local text = item_text(item)
  if type(text) ~= 'string' then
    return
  end
  local srow, scol = item_range(bufnr, item)
  local row, col = unpack(api.nvim_win_get_cursor(0))
  row = row - 1
  local typed = ''
  if srow < row or (srow == row and scol < col) then
    typed = table.concat(api.nvim_buf_get_text(bufnr, srow, scol, row, col, {}), '\n')
  end
  if text:sub(1, #typed) ~= typed then
    return
  end
  local rest = text:sub(#typed + 1)
  local chunk = require('fimble.ghost').next_chunk(rest, kind)
  if chunk == '' then
    return
  end
  local lines = vim.split(chunk, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
  local nrow = row + #lines - 1
  local ncol = (#lines == 1 and col or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { nrow + 1, ncol })
end

function M.accept(kind)
  if kind == 'word' or kind == 'line' then
    return ic().get({
      on_accept = function(item)
        M.accept_part(item, kind)
      end,
    }) and true or false
  end
  return ic().get() and true or false
end

function M.cycle(delta)
  ic().select({ count = delta })
  return true
end

function M.dismiss()
  local bufnr = api.nvim_get_current_buf()
  local shown = M.is_visible(bufnr)
  if shown then
    -- There is no public "dismiss": re-enabling drops the current candidate.
    M.detach(bufnr)
    M.attach(bufnr)
  end
  return shown
end

function M.suggest()
  -- The built-in requests on its own while typing; get() accepts when something is shown.
  return M.accept('all')
end

return M
