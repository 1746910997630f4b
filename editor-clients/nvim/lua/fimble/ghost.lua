-- Ghost text drawn with extmarks, for Neovim 0.10 and 0.11 (0.12+ uses vim.lsp.inline_completion).
--
-- The first line of a suggestion is inline virtual text at the cursor, the following lines are
-- `virt_lines` below the cursor line. Typing, moving the cursor or leaving insert mode clears it;
-- a debounced request follows TextChangedI / InsertEnter; a response for an older buffer state
-- (changedtick or cursor differ) is dropped; a new request cancels the one in flight.
local config = require('fimble.config')
local server = require('fimble.server')
local util = require('fimble.util')

local api = vim.api
local M = {}

M.ns = api.nvim_create_namespace('fimble.ghost')

local TRIGGER_INVOKED = 1
local TRIGGER_AUTOMATIC = 2

---@class fimble.GhostItem
---@field text string      the insertText
---@field srow integer     range start (0-based row, byte col)
---@field scol integer
---@field erow integer     range end
---@field ecol integer
---@field command? table

---@class fimble.GhostState
---@field items fimble.GhostItem[]
---@field index integer
---@field extmark? integer
---@field req? { client: vim.lsp.Client, id: integer, tick: integer }
---@field own? { tick: integer, row: integer, col: integer }  after our own partial accept

---@type table<integer, fimble.GhostState>
local states = {}

local timer = nil ---@type uv.uv_timer_t?

local function get_state(bufnr)
  local s = states[bufnr]
  if not s then
    s = { items = {}, index = 1 }
    states[bufnr] = s
  end
  return s
end

local function in_insert_mode()
  local mode = api.nvim_get_mode().mode
  return mode:sub(1, 1) == 'i'
end

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function pos_lt(r1, c1, r2, c2)
  return r1 < r2 or (r1 == r2 and c1 < c2)
end

local function buf_text(bufnr, srow, scol, erow, ecol)
  if not pos_lt(srow, scol, erow, ecol) then
    return ''
  end
  local ok, lines = pcall(api.nvim_buf_get_text, bufnr, srow, scol, erow, ecol, {})
  if not ok then
    return nil
  end
  return table.concat(lines, '\n')
end

--- What an item would add at the cursor: `rest` is the text still to insert, `after` the
--- buffer text between the cursor and the end of the item's range (which accepting replaces).
---@return { rest: string, after: string }?
local function view(bufnr, item, row, col)
  if pos_lt(row, col, item.srow, item.scol) then
    return nil -- the range starts after the cursor
  end
  local typed = buf_text(bufnr, item.srow, item.scol, row, col)
  if typed == nil or item.text:sub(1, #typed) ~= typed then
    return nil -- what is typed since the range start no longer matches the suggestion
  end
  local rest = item.text:sub(#typed + 1)
  local after = ''
  if pos_lt(row, col, item.erow, item.ecol) then
    after = buf_text(bufnr, row, col, item.erow, item.ecol) or ''
  end
  if rest == '' or rest == after then
    return nil -- nothing to add
  end
  return { rest = rest, after = after }
end

local function clear_extmark(bufnr)
  local s = states[bufnr]
  if s then
    s.extmark = nil
  end
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- Cancels the request in flight for `bufnr`, if any.
function M.cancel(bufnr)
  local s = states[bufnr]
  if s and s.req then
    util.cancel(s.req.client, s.req.id)
    s.req = nil
  end
end

function M.stop_timer()
  if timer then
    timer:stop()
  end
end

--- Removes the suggestion of `bufnr` (display and candidates).
function M.clear(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local s = states[bufnr]
  if s then
    s.items = {}
    s.index = 1
    s.own = nil
  end
  clear_extmark(bufnr)
end

local function expand_tabs(text)
  if not text:find('\t', 1, true) then
    return text
  end
  return (text:gsub('\t', string.rep(' ', vim.bo.tabstop > 0 and vim.bo.tabstop or 8)))
end

--- Draws the current candidate of `bufnr` at the cursor. Returns true when something is shown.
function M.render(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local s = states[bufnr]
  clear_extmark(bufnr)
  if not s or #s.items == 0 or bufnr ~= api.nvim_get_current_buf() then
    return false
  end
  local row, col = cursor()
  local item = s.items[s.index]
  local v = item and view(bufnr, item, row, col)
  if not v then
    -- Try the other candidates before giving up.
    for i, other in ipairs(s.items) do
      v = view(bufnr, other, row, col)
      if v then
        s.index = i
        item = other
        break
      end
    end
  end
  if not v then
    return false
  end
  local hl = config.options.hl_group or 'FimbleSuggestion'
  local lines = vim.split(v.rest, '\n', { plain = true })
  -- When the suggestion ends with the text after the cursor that it replaces (a closing bracket,
  -- say), do not show that text twice.
  if #lines == 1 and v.after ~= '' and vim.endswith(lines[1], v.after) then
    lines[1] = lines[1]:sub(1, #lines[1] - #v.after)
  end
  local opts = { virt_text_pos = 'inline', hl_mode = 'combine', priority = 4096, right_gravity = true }
  if lines[1] ~= '' then
    opts.virt_text = { { expand_tabs(lines[1]), hl } }
  end
  if #s.items > 1 then
    local label = (' (%d/%d)'):format(s.index, #s.items)
    if #lines == 1 then
      opts.virt_text = opts.virt_text or {}
      table.insert(opts.virt_text, { label, 'FimbleSuggestionIndex' })
    else
      lines[#lines] = lines[#lines] .. '\0' -- marker for the label, replaced below
    end
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      local l = lines[i]
      local chunks
      if l:sub(-1) == '\0' then
        chunks = { { expand_tabs(l:sub(1, -2)), hl }, { (' (%d/%d)'):format(s.index, #s.items), 'FimbleSuggestionIndex' } }
      else
        chunks = { { expand_tabs(l), hl } }
      end
      opts.virt_lines[#opts.virt_lines + 1] = chunks
    end
  end
  if not opts.virt_text and not opts.virt_lines then
    return false
  end
  s.extmark = api.nvim_buf_set_extmark(bufnr, M.ns, row, col, opts)
  return true
end

--- The text the current suggestion would insert at the cursor, or nil.
function M.get_suggestion(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local s = states[bufnr]
  if not s or not s.extmark or #s.items == 0 then
    return nil
  end
  local row, col = cursor()
  local v = view(bufnr, s.items[s.index], row, col)
  return v and v.rest or nil
end

function M.is_visible(bufnr)
  return M.get_suggestion(bufnr) ~= nil
end

--- What the last answered request returned: { tick, row, col, count } (count = usable items).
function M.last_result(bufnr)
  local s = states[bufnr or api.nvim_get_current_buf()]
  return s and s.last_result or nil
end

--- Whether a request is in flight for `bufnr`.
function M.pending(bufnr)
  local s = states[bufnr or api.nvim_get_current_buf()]
  return s ~= nil and s.req ~= nil
end

local function parse_items(bufnr, client, result, row, col)
  local raw_items = {}
  if type(result) == 'table' then
    raw_items = result.items or result
  end
  local enc = client.offset_encoding or 'utf-16'
  local items = {}
  local seen = {}
  for _, raw in ipairs(raw_items) do
    local text = type(raw) == 'table' and util.insert_text(raw.insertText) or nil
    if text then
      local srow, scol, erow, ecol = row, col, row, col
      if type(raw.range) == 'table' and raw.range.start and raw.range['end'] then
        srow, scol = util.pos_to_byte(bufnr, raw.range.start, enc)
        erow, ecol = util.pos_to_byte(bufnr, raw.range['end'], enc)
        if pos_lt(erow, ecol, srow, scol) then
          erow, ecol = srow, scol
        end
      end
      local item = { text = text, srow = srow, scol = scol, erow = erow, ecol = ecol, command = raw.command }
      local v = view(bufnr, item, row, col)
      if v then
        local key = v.rest .. '\0' .. v.after
        if not seen[key] then
          seen[key] = true
          items[#items + 1] = item
        end
      end
    end
  end
  return items
end

--- Sends textDocument/inlineCompletion for the cursor position of the current window.
---@param bufnr integer
---@param trigger_kind? integer 1 = invoked (explicit), 2 = automatic
---@param on_items? fun(s: fimble.GhostState, items: fimble.GhostItem[]) instead of replacing the candidates
function M.request(bufnr, trigger_kind, on_items)
  bufnr = bufnr or api.nvim_get_current_buf()
  if bufnr ~= api.nvim_get_current_buf() or not in_insert_mode() then
    return false
  end
  local client = server.get_client(bufnr)
  if not client then
    return false
  end
  local s = get_state(bufnr)
  M.cancel(bufnr)
  local win = api.nvim_get_current_win()
  local row, col = cursor()
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding or 'utf-16')
  params.context = { triggerKind = trigger_kind or TRIGGER_AUTOMATIC }
  local req
  local id = util.request(client, 'textDocument/inlineCompletion', params, function(err, result)
    if s.req ~= req then
      return -- superseded or cancelled
    end
    s.req = nil
    if err then
      if err.code ~= -32800 then -- RequestCancelled
        vim.lsp.log.warn('fimble: inlineCompletion failed', err)
      end
      return
    end
    -- Drop stale responses: the buffer, the cursor or the mode changed since the request.
    if not api.nvim_buf_is_valid(bufnr) or api.nvim_buf_get_changedtick(bufnr) ~= tick then
      return
    end
    if api.nvim_get_current_buf() ~= bufnr or not in_insert_mode() then
      return
    end
    local crow, ccol = cursor()
    if crow ~= row or ccol ~= col then
      return
    end
    local items = parse_items(bufnr, client, result, row, col)
    s.last_result = { tick = tick, row = row, col = col, count = #items }
    if on_items then
      on_items(s, items)
    else
      s.items = items
      s.index = 1
      s.fetched_more = nil
    end
    s.own = nil
    M.render(bufnr)
  end, bufnr)
  if id then
    req = { client = client, id = id, tick = tick }
    s.req = req
  end
  return id ~= nil
end

--- Requests a suggestion after `debounce_ms` (restarting the delay on each call).
function M.schedule(bufnr, delay)
  bufnr = bufnr or api.nvim_get_current_buf()
  if not config.options.auto_trigger then
    return
  end
  delay = delay or config.options.debounce_ms or 150
  timer = timer or assert(util.uv.new_timer())
  timer:stop()
  timer:start(
    delay,
    0,
    vim.schedule_wrap(function()
      if api.nvim_get_current_buf() == bufnr then
        M.request(bufnr, TRIGGER_AUTOMATIC)
      end
    end)
  )
end

--- Asks for a suggestion now (the `suggest` key).
function M.suggest()
  M.stop_timer()
  return M.request(api.nvim_get_current_buf(), TRIGGER_INVOKED)
end

local function current_item(bufnr)
  local s = states[bufnr]
  if not s or not s.extmark or #s.items == 0 then
    return nil
  end
  local row, col = cursor()
  local item = s.items[s.index]
  local v = item and view(bufnr, item, row, col)
  if not v then
    return nil
  end
  return s, item, v, row, col
end

local function exec_command(item, bufnr)
  if not item.command then
    return
  end
  local client = server.get_client(bufnr)
  if not client then
    return
  end
  pcall(function()
    if util.has_011() then
      client:exec_cmd(item.command, { bufnr = bufnr })
    else
      client._exec_cmd(item.command, { bufnr = bufnr })
    end
  end)
end

--- The piece of `rest` that "accept word" / "accept line" inserts.
function M.next_chunk(rest, kind)
  if kind == 'word' then
    return rest:match('^%s*[%w_]+') or rest:match('^%s*[^%w_%s]+') or rest:match('^%s+') or rest
  elseif kind == 'line' then
    if rest:sub(1, 1) == '\n' then
      return '\n' .. (rest:sub(2):match('^[^\n]*') or '')
    end
    return rest:match('^[^\n]*') or rest
  end
  return rest
end

local function end_of(row, col, lines)
  if #lines == 1 then
    return row, col + #lines[1]
  end
  return row + #lines - 1, #lines[#lines]
end

--- Accepts the whole suggestion ('all'), its next word ('word') or the rest of its line ('line').
--- Returns false when no suggestion is shown.
function M.accept(kind)
  kind = kind or 'all'
  local bufnr = api.nvim_get_current_buf()
  local s, item, v, row, col = current_item(bufnr)
  if not s then
    return false
  end
  local chunk = M.next_chunk(v.rest, kind)
  M.stop_timer()
  if chunk == v.rest then
    -- Everything: replace cursor..range end (what is before the cursor already matches).
    local erow, ecol = item.erow, item.ecol
    if pos_lt(erow, ecol, row, col) then
      erow, ecol = row, col
    end
    local lines = vim.split(v.rest, '\n', { plain = true })
    M.clear(bufnr)
    M.cancel(bufnr)
    api.nvim_buf_set_text(bufnr, row, col, erow, ecol, lines)
    local nrow, ncol = end_of(row, col, lines)
    api.nvim_win_set_cursor(0, { nrow + 1, ncol })
    exec_command(item, bufnr)
    return true
  end
  -- A part: insert it at the cursor and keep showing the remainder.
  local lines = vim.split(chunk, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
  local nrow, ncol = end_of(row, col, lines)
  for _, it in ipairs(s.items) do
    -- Shift range ends at or after the cursor past the inserted text.
    if it.erow == row and it.ecol >= col then
      it.erow, it.ecol = nrow, ncol + (it.ecol - col)
    elseif it.erow > row then
      it.erow = it.erow + #lines - 1
    end
  end
  api.nvim_win_set_cursor(0, { nrow + 1, ncol })
  s.own = { tick = api.nvim_buf_get_changedtick(bufnr), row = nrow, col = ncol }
  M.cancel(bufnr)
  M.render(bufnr)
  return true
end

--- Shows the next (delta = 1) or previous (delta = -1) candidate. With a single candidate, asks
--- the server for more (triggerKind Invoked) first.
function M.cycle(delta)
  local bufnr = api.nvim_get_current_buf()
  local s = states[bufnr]
  if not s or #s.items == 0 or not s.extmark then
    return M.suggest()
  end
  local function step()
    s.index = ((s.index - 1 + delta) % #s.items) + 1
    M.render(bufnr)
  end
  if #s.items == 1 and not s.fetched_more then
    local tick = api.nvim_buf_get_changedtick(bufnr)
    M.request(bufnr, TRIGGER_INVOKED, function(st, items)
      local old = st.items[st.index]
      local merged = { old }
      for _, it in ipairs(items) do
        if not (old and it.text == old.text and it.srow == old.srow and it.scol == old.scol) then
          merged[#merged + 1] = it
        end
      end
      st.items = merged
      st.index = 1
      st.fetched_more = tick
      if #merged > 1 then
        st.index = ((delta % #merged) + #merged) % #merged + 1
      end
    end)
    return true
  end
  step()
  return true
end

--- Hides the suggestion. Returns true when one was shown.
function M.dismiss()
  local bufnr = api.nvim_get_current_buf()
  local shown = M.is_visible(bufnr)
  M.stop_timer()
  M.cancel(bufnr)
  M.clear(bufnr)
  return shown
end

--- Called on typing and cursor moves: our own edits (partial accept) keep the suggestion.
local function is_own_change(bufnr)
  local s = states[bufnr]
  if not s or not s.own then
    return false
  end
  local row, col = cursor()
  if api.nvim_buf_get_changedtick(bufnr) == s.own.tick and row == s.own.row and col == s.own.col then
    return true
  end
  s.own = nil
  return false
end

function M.setup()
  local group = api.nvim_create_augroup('fimble.ghost', { clear = true })
  api.nvim_create_autocmd('InsertEnter', {
    group = group,
    callback = function(args)
      if server.get_client(args.buf) then
        M.schedule(args.buf)
      end
    end,
  })
  api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP' }, {
    group = group,
    callback = function(args)
      if is_own_change(args.buf) then
        return
      end
      M.cancel(args.buf)
      M.clear(args.buf)
      if server.get_client(args.buf) then
        M.schedule(args.buf)
      end
    end,
  })
  api.nvim_create_autocmd('CursorMovedI', {
    group = group,
    callback = function(args)
      local s = states[args.buf]
      if not s or (not s.extmark and not s.req) or is_own_change(args.buf) then
        return
      end
      local row, col = cursor()
      local mark = s.extmark and api.nvim_buf_get_extmark_by_id(args.buf, M.ns, s.extmark, {})
      if mark and mark[1] == row and mark[2] == col then
        return -- e.g. the redraw after rendering
      end
      if s.req and not s.extmark then
        -- Moved while waiting: the answer would be stale anyway.
        M.cancel(args.buf)
        return
      end
      M.cancel(args.buf)
      M.clear(args.buf)
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    callback = function(args)
      M.stop_timer()
      M.cancel(args.buf)
      M.clear(args.buf)
    end,
  })
  api.nvim_create_autocmd({ 'BufUnload', 'BufWipeout' }, {
    group = group,
    callback = function(args)
      M.cancel(args.buf)
      states[args.buf] = nil
    end,
  })
end

function M.teardown()
  pcall(api.nvim_del_augroup_by_name, 'fimble.ghost')
  M.stop_timer()
  for bufnr in pairs(states) do
    M.cancel(bufnr)
    M.clear(bufnr)
  end
end

return M
