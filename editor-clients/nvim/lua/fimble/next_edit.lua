-- Next-edit suggestions (editor-clients/PROTOCOL.md "## Next edit"): the edit the user is likely to make next, a few
-- lines from the cursor, drawn as an inline diff with extmarks.
--
-- When: once an edit pauses (after `next_edit.debounce_ms`, never while ghost text shows or is on its way), right
-- after a completion or a next edit is accepted, and on :FimbleNextEdit. A newer request cancels the one in flight; an
-- answer for an older buffer version is dropped. Keys exist only while a suggestion shows (buffer-local, insert and
-- normal mode): jump (<Tab>), apply (<Tab> again), dismiss (<Esc>). Any other edit, or a cursor move to a line that is
-- neither where it was asked nor where the edit is, dismisses it.
local config = require('fimble.config')
local server = require('fimble.server')
local util = require('fimble.util')

local api = vim.api
local M = {}

M.ns = api.nvim_create_namespace('fimble.next_edit')
M.METHOD = 'fimble/nextEdit'

local CANCELLED = -32800 -- RequestCancelled: we cancelled it
local CONTENT_MODIFIED = -32801 -- the buffer changed while the model ran

---------------------------------------------------------------------------------------------------
-- The pure part: LSP edits -> extmarks, and what a key does.
---------------------------------------------------------------------------------------------------

---@class fimble.NextEditMark
---@field row integer 0-based
---@field col integer byte column
---@field opts table nvim_buf_set_extmark() options

---@class fimble.NextEditPlan
---@field marks fimble.NextEditMark[]
---@field first_row integer first row the edits touch (0-based)
---@field last_row integer last row they touch
---@field jump { [1]: integer, [2]: integer } edits[1]'s start: (row, byte col)

local function expand_tabs(text, tabstop)
  if not text:find('\t', 1, true) then
    return text
  end
  return (text:gsub('\t', string.rep(' ', tabstop > 0 and tabstop or 8)))
end

local function lt(r1, c1, r2, c2)
  return r1 < r2 or (r1 == r2 and c1 < c2)
end

--- How `edits` (LSP TextEdits against the buffer's current text) are drawn: deleted text struck through
--- (FimbleNextEditDelete), inserted text inline (FimbleNextEditInsert), inserted lines as virtual lines below.
---@param bufnr integer
---@param edits { range: table, newText?: string, text?: string }[]
---@param encoding string the client's offset encoding
---@param tabstop? integer
---@return fimble.NextEditPlan
function M.plan(bufnr, edits, encoding, tabstop)
  tabstop = tabstop or vim.bo[bufnr].tabstop
  local line_count = api.nvim_buf_line_count(bufnr)
  local marks = {} ---@type fimble.NextEditMark[]
  local first_row, last_row = math.huge, -1
  local function add(row, col, opts)
    opts.priority = 4096
    marks[#marks + 1] = { row = row, col = col, opts = opts }
  end
  local function lines_chunks(lines)
    local out = {}
    for _, l in ipairs(lines) do
      out[#out + 1] = { { expand_tabs(l, tabstop), 'FimbleNextEditInsert' } }
    end
    return out
  end
  local jump
  for _, edit in ipairs(edits) do
    local text = M.edit_text(edit)
    local srow, scol = util.pos_to_byte(bufnr, edit.range.start, encoding)
    local erow, ecol = util.pos_to_byte(bufnr, edit.range['end'], encoding)
    if lt(erow, ecol, srow, scol) then
      erow, ecol = srow, scol
    end
    jump = jump or { srow, scol }
    local whole_lines = edit.range.start.character == 0
      and edit.range['end'].character == 0
      and (text == '' or text:sub(-1) == '\n')
    if whole_lines then
      -- Whole lines replaced by whole lines: strike the old ones, show the new ones below them (or, for a pure
      -- insertion, above the line they go before; after the last line, below it).
      local first, del_end = edit.range.start.line, math.min(edit.range['end'].line, line_count) - 1
      if del_end >= first then
        add(first, 0, {
          end_row = del_end,
          end_col = #util.get_line(bufnr, del_end),
          hl_group = 'FimbleNextEditDelete',
          hl_eol = true,
        })
      end
      local new = text == '' and {} or vim.split(text:sub(1, -2), '\n', { plain = true })
      if #new > 0 then
        if del_end >= first then
          add(del_end, 0, { virt_lines = lines_chunks(new) })
        elseif first < line_count then
          add(first, 0, { virt_lines = lines_chunks(new), virt_lines_above = true })
        else
          add(line_count - 1, 0, { virt_lines = lines_chunks(new) })
        end
      end
      first = math.min(first, line_count - 1)
      first_row = math.min(first_row, first)
      last_row = math.max(last_row, math.max(first, del_end))
    else
      if lt(srow, scol, erow, ecol) then
        add(srow, scol, { end_row = erow, end_col = ecol, hl_group = 'FimbleNextEditDelete', hl_eol = erow > srow })
      end
      local new = vim.split(text, '\n', { plain = true })
      if new[1] ~= '' then
        add(erow, ecol, {
          virt_text = { { expand_tabs(new[1], tabstop), 'FimbleNextEditInsert' } },
          virt_text_pos = 'inline',
        })
      end
      if #new > 1 then
        add(erow, ecol, { virt_lines = lines_chunks(vim.list_slice(new, 2)) })
      end
      first_row = math.min(first_row, srow)
      last_row = math.max(last_row, erow)
    end
  end
  return { marks = marks, first_row = first_row, last_row = last_row, jump = jump or { 0, 0 } }
end

--- The replacement text of an edit (`text` in fimble/nextEdit, `newText` in a plain TextEdit).
function M.edit_text(edit)
  local text = edit.text or edit.newText or ''
  return (text:gsub('\r\n?', '\n'))
end

--- What the combined jump/apply key does with the cursor on `row` (0-based): 'apply' on a line the edits touch,
--- else 'jump'.
---@param plan fimble.NextEditPlan
function M.tab_action(plan, row)
  if row >= plan.first_row and row <= plan.last_row then
    return 'apply'
  end
  return 'jump'
end

--- Whether a suggestion survives the cursor moving to `row`: it stays on the line it was asked from and on the
--- lines it changes.
---@param plan fimble.NextEditPlan
---@param origin integer the cursor's row when it was asked
function M.keeps(plan, origin, row)
  return row == origin or (row >= plan.first_row and row <= plan.last_row)
end

--- The "⇥ next edit: line N" hint, shown on the cursor line when the edit is elsewhere; nil when it is here.
---@param plan fimble.NextEditPlan
function M.hint(plan, row)
  if row >= plan.first_row and row <= plan.last_row then
    return nil
  end
  return ('⇥ next edit: line %d'):format(plan.jump[1] + 1)
end

---------------------------------------------------------------------------------------------------
-- State: the request in flight (one, for any buffer) and the suggestion shown per buffer.
---------------------------------------------------------------------------------------------------

---@class fimble.NextEditShown
---@field edits table[]   as the server sent them
---@field encoding string
---@field client_id integer
---@field version integer the LSP version they are against
---@field tick integer    changedtick when shown
---@field origin integer  cursor row when asked
---@field plan fimble.NextEditPlan
---@field maps { mode: string, lhs: string, saved: table }[]

---@type table<integer, fimble.NextEditShown>
local shown = {}

---@class fimble.NextEditRequest
---@field client vim.lsp.Client
---@field id integer
---@field bufnr integer
---@field version integer
---@field tick integer
---@field origin integer
---@field explicit boolean

---@type fimble.NextEditRequest?
local inflight = nil

local timer = nil ---@type uv.uv_timer_t?

--- What the last answer was, for :FimbleNextEdit, the tests and logs: { bufnr, version, count, reason }.
M.last_result = nil ---@type { bufnr: integer, version: integer, count: integer, reason?: string }?
--- How many requests were sent (the tests check that a turned-off client sends none).
M.requests_sent = 0

local function options()
  return config.options.next_edit or {}
end

--- Whether next edits are asked for at all: the plugin option `next_edit` and the server setting `nextEdit`.
function M.enabled()
  local opts = config.options
  return opts.enabled ~= false and options().enabled ~= false and (opts.settings or {}).nextEdit ~= false
end

local function version_of(bufnr)
  return vim.lsp.util.buf_versions[bufnr]
end

local function editing_mode()
  local mode = api.nvim_get_mode().mode
  return mode == 'n' or mode:sub(1, 1) == 'i'
end

local function cursor_row()
  return api.nvim_win_get_cursor(0)[1] - 1
end

--- Ghost text (extmarks or the built-in) shown in `bufnr`, and whether a ghost-text request is on its way.
local function ghost(bufnr)
  local fimble = require('fimble')
  if fimble.mode == 'builtin' then
    return require('fimble.builtin').is_visible(bufnr), false
  end
  local g = require('fimble.ghost')
  return g.is_visible(bufnr), g.pending(bufnr)
end

function M.stop_timer()
  if timer then
    timer:stop()
  end
end

--- Cancels the request in flight.
function M.cancel()
  if inflight then
    util.cancel(inflight.client, inflight.id)
    inflight = nil
  end
end

--- Whether a suggestion shows in `bufnr`.
function M.is_visible(bufnr)
  return shown[bufnr or api.nvim_get_current_buf()] ~= nil
end

--- The suggestion shown in `bufnr` (edits, version, plan), or nil.
function M.get(bufnr)
  return shown[bufnr or api.nvim_get_current_buf()]
end

--- Whether a request is in flight.
function M.pending()
  return inflight ~= nil
end

local unmap

--- Removes the suggestion of `bufnr` (drawing and keys).
function M.clear(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = shown[bufnr]
  shown[bufnr] = nil
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
  if st then
    unmap(bufnr, st)
  end
end

--- Draws the suggestion of `bufnr`, with the hint on the cursor line when the edit is elsewhere.
function M.render(bufnr)
  local st = shown[bufnr]
  api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  if not st then
    return
  end
  for _, m in ipairs(st.plan.marks) do
    pcall(api.nvim_buf_set_extmark, bufnr, M.ns, m.row, m.col, m.opts)
  end
  if bufnr == api.nvim_get_current_buf() then
    local row = cursor_row()
    local hint = M.hint(st.plan, row)
    if hint then
      api.nvim_buf_set_extmark(bufnr, M.ns, row, 0, {
        virt_text = { { hint, 'FimbleNextEditHint' } },
        virt_text_pos = 'eol',
        priority = 4096,
      })
    end
  end
end

---------------------------------------------------------------------------------------------------
-- Keys: buffer-local, only while a suggestion shows; otherwise (and for <Tab> while ghost text or the pop-up menu
-- shows) the key does what it did before.
---------------------------------------------------------------------------------------------------

local function feed(keys, mode)
  api.nvim_feedkeys(keys, mode, false)
end

--- Runs the mapping `saved` (a maparg() dict) that ours shadows, or the key itself when there was none.
local function fallback(saved, lhs)
  if saved and saved.lhs then
    local keys
    if saved.callback then
      local ok, result = pcall(saved.callback)
      if not ok or saved.expr ~= 1 or type(result) ~= 'string' then
        return
      end
      keys = result
    elseif saved.expr == 1 then
      keys = api.nvim_eval(saved.rhs)
    else
      keys = saved.rhs
    end
    if keys ~= '' then
      feed(vim.keycode(keys), saved.noremap == 1 and 'n' or 'm')
    end
    return
  end
  feed(vim.keycode(lhs), 'n')
end

local function is_esc(lhs)
  return vim.keycode(lhs) == vim.keycode('<Esc>')
end

--- The handler of `lhs` in `mode`, which does the actions in `names` (jump and apply may share a key).
local function key_handler(bufnr, mode, lhs, names)
  return function()
    local st = shown[bufnr]
    local saved
    if st then
      for _, m in ipairs(st.maps) do
        if m.mode == mode and m.lhs == lhs then
          saved = m.saved
        end
      end
    end
    if st and names.dismiss then
      M.dismiss()
      if mode == 'i' and is_esc(lhs) then
        feed(vim.keycode('<Esc>'), 'n') -- <Esc> still leaves insert mode: nobody wants to press it twice
      end
      return
    end
    local ghost_visible = ghost(bufnr)
    if st and not ghost_visible and vim.fn.pumvisible() == 0 then
      local action = M.tab_action(st.plan, cursor_row())
      if names.jump and action == 'jump' then
        M.jump()
        return
      elseif names.apply then
        M.apply() -- a key of its own applies from anywhere
        return
      end
    end
    fallback(saved, lhs)
  end
end

local descriptions = {
  jump = 'jump to the next edit',
  apply = 'apply the next edit',
  dismiss = 'dismiss the next edit',
}

local function map(bufnr, st)
  local by_key = {} ---@type table<string, table<string, boolean>>
  local order = {}
  for _, name in ipairs({ 'jump', 'apply', 'dismiss' }) do
    local lhs = (options().keymaps or {})[name]
    if type(lhs) == 'string' and lhs ~= '' then
      if not by_key[lhs] then
        by_key[lhs] = {}
        order[#order + 1] = lhs
      end
      by_key[lhs][name] = true
    end
  end
  st.maps = {}
  for _, lhs in ipairs(order) do
    local names = by_key[lhs]
    local desc = {}
    for _, name in ipairs({ 'jump', 'apply', 'dismiss' }) do
      if names[name] then
        desc[#desc + 1] = descriptions[name]
      end
    end
    for _, mode in ipairs({ 'i', 'n' }) do
      -- What the key meant before (a buffer-local mapping, else the global one): the fallback, and restored after.
      local saved = vim.fn.maparg(lhs, mode, false, true)
      st.maps[#st.maps + 1] = { mode = mode, lhs = lhs, saved = (saved and saved.lhs) and saved or nil }
      vim.keymap.set(mode, lhs, key_handler(bufnr, mode, lhs, names), {
        buffer = bufnr,
        silent = true,
        nowait = true,
        desc = 'fimble: ' .. table.concat(desc, ', '),
      })
    end
  end
end

unmap = function(bufnr, st)
  if not api.nvim_buf_is_valid(bufnr) then
    return
  end
  for _, m in ipairs(st.maps or {}) do
    pcall(vim.keymap.del, m.mode, m.lhs, { buffer = bufnr })
    if m.saved and m.saved.buffer == 1 then
      api.nvim_buf_call(bufnr, function()
        pcall(vim.fn.mapset, m.mode, false, m.saved)
      end)
    end
  end
  st.maps = {}
end

---------------------------------------------------------------------------------------------------
-- Asking and showing
---------------------------------------------------------------------------------------------------

local function say(msg)
  api.nvim_echo({ { msg } }, true, {})
end

--- Shows `edits` (the answer for `req`) in its buffer if they still apply to it.
local function show(req, edits)
  local bufnr = req.bufnr
  if
    not api.nvim_buf_is_valid(bufnr)
    or version_of(bufnr) ~= req.version
    or api.nvim_buf_get_changedtick(bufnr) ~= req.tick
  then
    return false
  end
  if api.nvim_get_current_buf() ~= bufnr or not editing_mode() then
    return false
  end
  local uri = vim.uri_from_bufnr(bufnr)
  for _, e in ipairs(edits) do
    local doc = e.textDocument
    if type(e.range) ~= 'table' or (doc and (doc.uri ~= uri or (doc.version and doc.version ~= req.version))) then
      return false -- for another document or another version of this one: nothing is shown for old text
    end
  end
  local plan = M.plan(bufnr, edits, req.client.offset_encoding or 'utf-16')
  if not M.keeps(plan, req.origin, cursor_row()) then
    return false -- the cursor went elsewhere while the model ran
  end
  M.clear(bufnr)
  local st = {
    edits = edits,
    encoding = req.client.offset_encoding or 'utf-16',
    client_id = req.client.id,
    version = req.version,
    tick = req.tick,
    origin = req.origin,
    plan = plan,
    maps = {},
  }
  shown[bufnr] = st
  map(bufnr, st)
  M.render(bufnr)
  return true
end

--- Asks for a next edit at the cursor of the current window now. `explicit` (:FimbleNextEdit): say in the message
--- area when there is none, and why.
function M.request(bufnr, explicit)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  M.stop_timer()
  if not M.enabled() then
    if explicit then
      say('fimble: next edits are turned off (the next_edit option or the nextEdit setting)')
    end
    return false
  end
  if bufnr ~= api.nvim_get_current_buf() then
    return false
  end
  local client = server.get_client(bufnr)
  if not client then
    if explicit then
      say('fimble: the server is not running in this buffer')
    end
    return false
  end
  M.cancel()
  local version = version_of(bufnr)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding or 'utf-16')
  params.textDocument.version = version
  local req
  -- With bufnr, the client sends pending didChange notifications first, so the server has this version.
  local id = util.request(client, M.METHOD, params, function(err, result)
    if inflight ~= req then
      return -- superseded or cancelled
    end
    inflight = nil
    if err then
      if err.code ~= CANCELLED and err.code ~= CONTENT_MODIFIED then
        vim.lsp.log.warn('fimble: nextEdit failed', err)
      end
      return
    end
    local edits = type(result) == 'table' and type(result.edits) == 'table' and result.edits or {}
    local reason = type(result) == 'table' and result.reason or nil
    M.last_result = { bufnr = bufnr, version = version, count = #edits, reason = reason }
    if #edits == 0 then
      vim.lsp.log.debug('fimble: no next edit', reason)
      if req.explicit then
        say('fimble: no next edit' .. (reason and (' (' .. reason .. ')') or ''))
      end
      return
    end
    if not show(req, edits) and req.explicit then
      say('fimble: the next edit came for text that has changed since')
    end
  end, bufnr)
  if not id then
    return false
  end
  M.requests_sent = M.requests_sent + 1
  req = {
    client = client,
    id = id,
    bufnr = bufnr,
    version = version,
    tick = api.nvim_buf_get_changedtick(bufnr),
    origin = cursor_row(),
    explicit = explicit or false,
  }
  inflight = req
  return true
end

--- Asks after `next_edit.debounce_ms`, unless ghost text shows; waits while a ghost-text request is on its way.
function M.schedule(bufnr)
  if not M.enabled() then
    return
  end
  timer = timer or assert(util.uv.new_timer())
  timer:stop()
  local function fire()
    if not api.nvim_buf_is_valid(bufnr) or api.nvim_get_current_buf() ~= bufnr or not editing_mode() then
      return
    end
    local visible, pending = ghost(bufnr)
    if visible then
      return -- ghost text goes first; asking again follows the next edit
    end
    if pending then
      timer:start(options().debounce_ms or 300, 0, vim.schedule_wrap(fire))
      return
    end
    M.request(bufnr)
  end
  timer:start(options().debounce_ms or 300, 0, vim.schedule_wrap(fire))
end

--- After the user accepted a completion: ask at once (once the inserted text is in the buffer).
function M.after_accept(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if not M.enabled() then
    return
  end
  vim.schedule(function()
    if api.nvim_buf_is_valid(bufnr) and api.nvim_get_current_buf() == bufnr then
      M.request(bufnr)
    end
  end)
end

---------------------------------------------------------------------------------------------------
-- Actions (each returns true when it did something)
---------------------------------------------------------------------------------------------------

--- Moves the cursor to the start of the first edit.
function M.jump()
  local bufnr = api.nvim_get_current_buf()
  local st = shown[bufnr]
  if not st then
    return false
  end
  if api.nvim_get_mode().mode == 'n' then
    vim.cmd("normal! m'") -- <C-o> comes back
  end
  local row, col = st.plan.jump[1], st.plan.jump[2]
  api.nvim_win_set_cursor(0, { row + 1, col })
  M.render(bufnr)
  return true
end

--- Closes the undo block: what follows is undone on its own (works in insert mode too, unlike :undojoin's opposite).
local function break_undo()
  vim.go.undolevels = vim.go.undolevels
end

--- Applies the edits as one undo step, puts the cursor after the last one and asks for the next edit.
function M.apply()
  local bufnr = api.nvim_get_current_buf()
  local st = shown[bufnr]
  if not st then
    return false
  end
  M.clear(bufnr)
  if version_of(bufnr) ~= st.version or api.nvim_buf_get_changedtick(bufnr) ~= st.tick then
    return false
  end
  local edits = {}
  for _, e in ipairs(st.edits) do
    edits[#edits + 1] = { range = vim.deepcopy(e.range), newText = M.edit_text(e) }
  end
  -- A mark at the end of the last edit follows the text in: the cursor goes there.
  local last = st.edits[#st.edits]
  local erow, ecol = util.pos_to_byte(bufnr, last.range['end'], st.encoding)
  local mark = api.nvim_buf_set_extmark(bufnr, M.ns, erow, ecol, { right_gravity = true })
  break_undo()
  vim.lsp.util.apply_text_edits(edits, bufnr, st.encoding)
  break_undo()
  local pos = api.nvim_buf_get_extmark_by_id(bufnr, M.ns, mark, {})
  api.nvim_buf_del_extmark(bufnr, M.ns, mark)
  if pos and pos[1] then
    pcall(api.nvim_win_set_cursor, 0, { pos[1] + 1, pos[2] })
  end
  M.request(bufnr)
  return true
end

--- Hides the suggestion and cancels the request in flight.
function M.dismiss()
  local bufnr = api.nvim_get_current_buf()
  local was = shown[bufnr] ~= nil
  M.stop_timer()
  M.cancel()
  M.clear(bufnr)
  return was
end

--- :FimbleNextEdit [apply|jump|dismiss]: without an argument, ask now.
function M.command(arg)
  arg = vim.trim(arg or '')
  if arg == '' then
    return M.request(api.nvim_get_current_buf(), true)
  elseif arg == 'apply' then
    return M.apply()
  elseif arg == 'jump' then
    return M.jump()
  elseif arg == 'dismiss' then
    return M.dismiss()
  end
  local msg = ('fimble: unknown :FimbleNextEdit argument %q (apply, jump, dismiss)'):format(arg)
  api.nvim_echo({ { msg, 'ErrorMsg' } }, true, {})
  return false
end

---------------------------------------------------------------------------------------------------
-- Autocommands
---------------------------------------------------------------------------------------------------

--- An edit: the suggestion goes (unless it is the change it was asked for), and a new one is asked after a pause
--- (not after an undo or redo: that would offer back what was just undone).
local function on_change(bufnr, undo)
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local st = shown[bufnr]
  if st and st.tick == tick then
    return
  end
  if inflight and inflight.bufnr == bufnr and inflight.tick == tick then
    return -- asked for exactly this text (after an accept)
  end
  if inflight and inflight.bufnr == bufnr then
    M.cancel()
  end
  M.clear(bufnr)
  if undo then
    M.stop_timer()
  elseif server.get_client(bufnr) then
    M.schedule(bufnr)
  end
end

--- Whether a normal-mode change is an undo or redo: its change number is not a new one. (Leaving insert mode reports
--- the insert's changes again, with the number they already had: they were asked about while typing.)
local max_change = {} ---@type table<integer, integer>
local function undo_or_redo(bufnr)
  local nr = vim.fn.changenr()
  local before = max_change[bufnr] or -1
  max_change[bufnr] = math.max(before, nr)
  return nr <= before
end

function M.setup()
  local group = api.nvim_create_augroup('fimble.next_edit', { clear = true })
  api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP' }, {
    group = group,
    callback = function(args)
      max_change[args.buf] = math.max(max_change[args.buf] or -1, vim.fn.changenr())
      on_change(args.buf)
    end,
  })
  api.nvim_create_autocmd('TextChanged', {
    group = group,
    callback = function(args)
      on_change(args.buf, undo_or_redo(args.buf))
    end,
  })
  api.nvim_create_autocmd({ 'CursorMoved', 'CursorMovedI' }, {
    group = group,
    callback = function(args)
      local st = shown[args.buf]
      if not st then
        return
      end
      if api.nvim_buf_get_changedtick(args.buf) ~= st.tick then
        return -- TextChanged* decides
      end
      if M.keeps(st.plan, st.origin, cursor_row()) then
        M.render(args.buf) -- the hint follows the cursor line
      else
        M.clear(args.buf)
      end
    end,
  })
  api.nvim_create_autocmd({ 'BufLeave', 'WinLeave' }, {
    group = group,
    callback = function(args)
      M.stop_timer()
      if inflight and inflight.bufnr == args.buf then
        M.cancel()
      end
      M.clear(args.buf)
    end,
  })
  api.nvim_create_autocmd({ 'BufUnload', 'BufWipeout' }, {
    group = group,
    callback = function(args)
      if inflight and inflight.bufnr == args.buf then
        M.cancel()
      end
      shown[args.buf] = nil
      max_change[args.buf] = nil
    end,
  })
end

function M.teardown()
  pcall(api.nvim_del_augroup_by_name, 'fimble.next_edit')
  M.stop_timer()
  M.cancel()
  for bufnr in pairs(shown) do
    M.clear(bufnr)
  end
end

return M
