-- :FimbleExplain: workspace/executeCommand `fimble.explain`, shown in a floating Markdown window
-- that fills in as `fimble/explanation` notifications stream in.
local config = require('fimble.config')
local server = require('fimble.server')
local util = require('fimble.util')

local api = vim.api
local M = {}

---@class fimble.Explanation
---@field token string
---@field text string
---@field buf integer
---@field win? integer
---@field done boolean
---@field deltas? integer  number of fimble/explanation notifications received

---@type table<string, fimble.Explanation>
M.sessions = {}

--- The most recent explanation (for tests and `:FimbleExplain` re-use).
---@type fimble.Explanation?
M.last = nil

local counter = 0

local function new_token()
  counter = counter + 1
  return ('fimble-nvim-%d-%d-%d'):format(vim.fn.getpid(), counter, util.uv.hrtime() % 1000000)
end

local function text_lines(text)
  local lines = vim.split(text, '\n', { plain = true })
  if #lines > 1 and lines[#lines] == '' then
    lines[#lines] = nil
  end
  return lines
end

local function layout(lines)
  local opts = config.options.explain or {}
  local max_w = math.max(20, math.min(opts.max_width or 80, vim.o.columns - 4))
  local max_h = math.max(3, math.min(opts.max_height or 30, vim.o.lines - 4))
  local width = 30
  for _, l in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(l))
  end
  width = math.min(width, max_w)
  local height = 0
  for _, l in ipairs(lines) do
    height = height + math.max(1, math.ceil(vim.fn.strdisplaywidth(l) / width))
  end
  height = math.max(1, math.min(height, max_h))
  return {
    relative = 'editor',
    width = width,
    height = height,
    row = math.max(0, math.floor((vim.o.lines - height) / 2) - 1),
    col = math.max(0, math.floor((vim.o.columns - width) / 2)),
  }
end

local function close(session)
  if session.win and api.nvim_win_is_valid(session.win) then
    pcall(api.nvim_win_close, session.win, true)
  end
  session.win = nil
end

local function render(session)
  if not api.nvim_buf_is_valid(session.buf) then
    return
  end
  local lines = text_lines(session.text)
  vim.bo[session.buf].modifiable = true
  api.nvim_buf_set_lines(session.buf, 0, -1, false, lines)
  vim.bo[session.buf].modifiable = false
  if session.win and api.nvim_win_is_valid(session.win) then
    local cfg = layout(lines)
    pcall(api.nvim_win_set_config, session.win, cfg)
  end
end

local function open(session, title)
  local buf = api.nvim_create_buf(false, true)
  session.buf = buf
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].filetype = 'markdown'
  local lines = text_lines(session.text)
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  local opts = config.options.explain or {}
  local cfg = layout(lines)
  cfg.style = 'minimal'
  cfg.border = opts.border or 'rounded'
  if cfg.border ~= 'none' then
    cfg.title = title
    cfg.title_pos = 'center'
  end
  local enter = opts.enter ~= false
  local win = api.nvim_open_win(buf, enter, cfg)
  session.win = win
  vim.wo[win].wrap = true
  vim.wo[win].linebreak = true
  vim.wo[win].conceallevel = 2
  pcall(vim.treesitter.start, buf, 'markdown')
  for _, key in ipairs({ 'q', '<Esc>' }) do
    vim.keymap.set('n', key, function()
      close(session)
    end, { buffer = buf, nowait = true, desc = 'Close the fimble explanation' })
  end
  api.nvim_create_autocmd('WinClosed', {
    pattern = tostring(win),
    once = true,
    callback = function()
      session.win = nil
      M.sessions[session.token] = nil
    end,
  })
end

--- `fimble/explanation` notification handler.
function M.on_notification(_, params, _)
  if type(params) ~= 'table' or type(params.token) ~= 'string' then
    return
  end
  local session = M.sessions[params.token]
  if not session or session.done then
    return
  end
  if session.placeholder then
    session.placeholder = nil
    session.text = ''
  end
  session.text = session.text .. (params.delta or '')
  session.deltas = (session.deltas or 0) + 1
  render(session)
end

--- Runs `fimble.explain` with the given argument ({ uri, range }) and shows the result.
---@param client vim.lsp.Client
---@param arg { uri: string, range: table }
---@param bufnr integer
function M.run(client, arg, bufnr)
  local token = new_token()
  local session = { token = token, text = '_fimble is explaining..._', placeholder = true, done = false }
  if M.last then
    close(M.last)
  end
  M.sessions[token] = session
  M.last = session
  open(session, ' fimble: explanation ')
  local params = {
    command = 'fimble.explain',
    arguments = { { uri = arg.uri, range = arg.range, token = token } },
  }
  local id = util.request(client, 'workspace/executeCommand', params, function(err, result)
    session.done = true
    session.placeholder = nil
    if err then
      session.text = ('**fimble: the explanation failed.**\n\n%s'):format(err.message or vim.inspect(err))
    elseif type(result) == 'table' and type(result.markdown) == 'string' then
      session.text = result.markdown
    elseif session.text == '' then
      session.text = '_fimble returned no explanation._'
    end
    render(session)
    M.sessions[token] = nil
  end, bufnr)
  if not id then
    session.done = true
    session.text = '**fimble: the server is not running.**'
    render(session)
  end
  return session
end

--- :[range]FimbleExplain. Without a range (`line1` nil) it sends an empty range at the cursor:
--- the server then explains the enclosing statement or definition.
function M.explain(line1, line2, bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local client = server.get_client(bufnr)
  if not client then
    util.notify('fimble: the server is not running for this buffer (see :FimbleStatus)', vim.log.levels.WARN)
    return nil
  end
  local enc = client.offset_encoding or 'utf-16'
  local range
  if line1 == nil then
    local row, col = unpack(api.nvim_win_get_cursor(0))
    local character = util.lsp_col(util.get_line(bufnr, row - 1), col, enc)
    range = { start = { line = row - 1, character = character }, ['end'] = { line = row - 1, character = character } }
  else
    line2 = line2 or line1
    if line2 < line1 then
      line1, line2 = line2, line1
    end
    local last = util.get_line(bufnr, line2 - 1)
    range = {
      start = { line = line1 - 1, character = 0 },
      ['end'] = { line = line2 - 1, character = util.lsp_col(last, #last, enc) },
    }
  end
  return M.run(client, { uri = vim.uri_from_bufnr(bufnr), range = range }, bufnr)
end

--- Client-side handler of the `fimble.explain` command (e.g. from the "Explain with fimble" code
--- action), so that its result is shown the same way.
function M.command_handler(command, ctx)
  local arg = command.arguments and command.arguments[1]
  local client = ctx and ctx.client_id and vim.lsp.get_client_by_id(ctx.client_id) or server.get_client(ctx and ctx.bufnr)
  if type(arg) ~= 'table' or not client then
    return
  end
  M.run(client, arg, ctx.bufnr or api.nvim_get_current_buf())
end

return M
