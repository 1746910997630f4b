-- Unit test of next-edit suggestions (lua/fimble/next_edit.lua) against a fake LSP client: the extmark plan of
-- known edits (UTF-16 ranges, whole lines, several lines), what the keys do, stale and cancelled answers, one undo
-- step per apply, and the keys giving way to ghost text and to their earlier meaning.
--
--   nvim --headless --clean -l editor-clients/nvim/tests/next_edit_spec.lua
local t = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')
local check, eq = t.check, t.eq
vim.o.showmode = false

local api = vim.api

local requests, cancelled = {}, {}
local fake = { id = 98, name = 'fimble', initialized = true, offset_encoding = 'utf-16' }
function fake:request(method, params, handler, bufnr)
  local id = #requests + 1
  requests[id] = { method = method, params = params, handler = handler, bufnr = bufnr }
  return true, id
end
function fake:cancel_request(id)
  cancelled[#cancelled + 1] = id
end
function fake:is_stopped()
  return false
end
function fake:notify()
  return true
end
if vim.fn.has('nvim-0.11') == 0 then
  for _, m in ipairs({ 'request', 'cancel_request', 'is_stopped', 'notify' }) do
    local f = fake[m]
    fake[m] = function(...)
      return f(fake, ...)
    end
  end
end

local fimble = require('fimble')
local config = require('fimble.config')
fimble.setup({ filetypes = { 'no-such-filetype' }, ghost_text = 'extmarks', auto_trigger = false })
local server = require('fimble.server')
local ghost = require('fimble.ghost')
local ne = require('fimble.next_edit')
server.get_client = function()
  return fake
end
vim.lsp.get_client_by_id = function(id)
  return id == fake.id and fake or nil
end

local function reset()
  requests, cancelled = {}, {}
  ne.dismiss()
end

local function pos(line, character)
  return { line = line, character = character }
end

local function edit(l1, c1, l2, c2, text)
  return { range = { start = pos(l1, c1), ['end'] = pos(l2, c2) }, text = text }
end

local AREA = {
  'import math',
  '',
  '',
  'def area(r):',
  '    """Area of a circle."""',
  '    return math.pi * radius * radius',
}

local function buffer(lines)
  vim.cmd('enew!')
  vim.bo.buftype = 'nofile'
  vim.bo.undolevels = 1000
  api.nvim_buf_set_lines(0, 0, -1, false, lines)
  -- A fresh undo history, so the first `u` undoes what the test did, not the line setup.
  local ul = vim.bo.undolevels
  vim.bo.undolevels = -1
  api.nvim_buf_set_lines(0, 0, -1, false, lines)
  vim.bo.undolevels = ul
end

--- Runs `fn` in insert mode (cursor at the end of line `row`), then `keys` as typed, then <Esc> unless `stay`.
local pending_fn, pending_err
vim.keymap.set('i', '<F3>', function()
  local ok, err = xpcall(pending_fn, debug.traceback)
  if not ok then
    pending_err = err
  end
end)
-- <F4> runs _G.probe() in insert mode without moving the cursor (unlike <C-o>).
vim.keymap.set('i', '<F4>', function()
  _G.probe()
end)
local function n_marks()
  return #api.nvim_buf_get_extmarks(0, ne.ns, 0, -1, {})
end

local function in_insert(row, fn, keys)
  api.nvim_win_set_cursor(0, { row, 0 })
  pending_fn, pending_err = fn, nil
  api.nvim_feedkeys(vim.keycode('A<F3>' .. (keys or '') .. '<Esc>'), 'tx', false)
  if pending_err then
    error(pending_err, 0)
  end
end

local function answer(req, edits, version)
  local uri = req.params.textDocument.uri
  for _, e in ipairs(edits) do
    e.textDocument = { uri = uri, version = version or req.params.textDocument.version }
  end
  req.handler(nil, { edits = edits }, { method = req.method, client_id = fake.id, bufnr = req.bufnr })
end

--- Expected plan entries: a struck-through range, inline text, virtual lines.
local function D(row, col, end_row, end_col, eol)
  local opts = { end_row = end_row, end_col = end_col, hl_group = 'FimbleNextEditDelete', hl_eol = eol }
  opts.priority = 4096
  return { row = row, col = col, opts = opts }
end
local function I(row, col, text)
  local opts = { virt_text = { { text, 'FimbleNextEditInsert' } }, virt_text_pos = 'inline', priority = 4096 }
  return { row = row, col = col, opts = opts }
end
local function L(row, lines, above)
  local chunks = vim.tbl_map(function(l)
    return { { l, 'FimbleNextEditInsert' } }
  end, lines)
  return { row = row, col = 0, opts = { virt_lines = chunks, virt_lines_above = above, priority = 4096 } }
end

local function ghost_answer(req, items)
  req.handler(nil, { items = items }, { method = req.method, client_id = fake.id, bufnr = req.bufnr })
end

local function marks()
  local out = {}
  for _, m in ipairs(api.nvim_buf_get_extmarks(0, ne.ns, 0, -1, { details = true })) do
    local d = m[4]
    out[#out + 1] = {
      row = m[2],
      col = m[3],
      end_row = d.end_row,
      end_col = d.end_col,
      hl = d.hl_group,
      virt_text = d.virt_text,
      virt_text_pos = d.virt_text_pos,
      virt_lines = d.virt_lines,
      above = d.virt_lines_above or nil,
    }
  end
  return out
end

local function buf_map(mode, lhs)
  local m = vim.fn.maparg(lhs, mode, false, true)
  return m.buffer == 1 and m or nil
end

-- The edit the scripted e2e server makes for this file: both uses of the old name on the return line.
local RENAME = { edit(5, 21, 5, 27, 'r'), edit(5, 30, 5, 36, 'r') }

---------------------------------------------------------------------------------------------------
-- The plan
---------------------------------------------------------------------------------------------------

check('plan: replaced words are struck through, their replacement inline right after them', function()
  buffer(AREA)
  local plan = ne.plan(0, RENAME, 'utf-16')
  eq(5, plan.first_row, 'first row')
  eq(5, plan.last_row, 'last row')
  eq({ 5, 21 }, plan.jump, 'jump target')
  eq({ D(5, 21, 5, 27, false), I(5, 27, 'r'), D(5, 30, 5, 36, false), I(5, 36, 'r') }, plan.marks, 'marks')
end)

check('plan: UTF-16 ranges become byte columns', function()
  buffer({ 'x = "é😀" + radius' })
  -- "é" is 1 UTF-16 unit (2 bytes), "😀" 2 units (4 bytes): "radius" starts at unit 12, byte 15.
  local plan = ne.plan(0, { edit(0, 12, 0, 18, 'r') }, 'utf-16')
  eq({ 15, 21 }, { plan.marks[1].col, plan.marks[1].opts.end_col }, 'deleted bytes')
  eq({ 0, 15 }, plan.jump, 'jump target')
end)

check('plan: whole lines replaced are struck to the end of line, the new lines shown below them', function()
  buffer({ 'a', 'b\tc', 'd' })
  local plan = ne.plan(0, { edit(1, 0, 2, 0, 'b\tC\nextra\n') }, 'utf-16', 4)
  eq({ D(1, 0, 1, 3, true), L(1, { 'b    C', 'extra' }) }, plan.marks, 'marks')
  eq({ 1, 1 }, { plan.first_row, plan.last_row }, 'rows')
end)

check('plan: inserted lines go above the line they precede; at the end of the buffer, below the last', function()
  buffer({ 'a', 'b' })
  local plan = ne.plan(0, { edit(1, 0, 1, 0, 'new\n') }, 'utf-16')
  eq({ L(1, { 'new' }, true) }, plan.marks, 'above')
  plan = ne.plan(0, { edit(2, 0, 2, 0, 'tail\n') }, 'utf-16')
  eq({ L(1, { 'tail' }) }, plan.marks, 'below')
end)

check('plan: a line deleted whole is struck through and nothing is inserted', function()
  buffer({ 'a', 'b', 'c' })
  local plan = ne.plan(0, { edit(1, 0, 2, 0, '') }, 'utf-16')
  eq({ D(1, 0, 1, 1, true) }, plan.marks, 'marks')
end)

check('plan: text of several lines inside a line: its first line inline, the rest as virtual lines', function()
  buffer({ 'f(a)' })
  local plan = ne.plan(0, { edit(0, 2, 0, 3, 'x,\n  y') }, 'utf-16')
  eq('x,', plan.marks[2].opts.virt_text[1][1], 'inline')
  eq({ { { '  y', 'FimbleNextEditInsert' } } }, plan.marks[3].opts.virt_lines, 'virt_lines')
end)

check('tab_action, keeps and hint', function()
  buffer(AREA)
  local plan = ne.plan(0, RENAME, 'utf-16')
  eq('jump', ne.tab_action(plan, 3), 'from the def line')
  eq('apply', ne.tab_action(plan, 5), 'on the edit line')
  eq(true, ne.keeps(plan, 3, 3), 'on the line it was asked from')
  eq(true, ne.keeps(plan, 3, 5), 'on the edit')
  eq(false, ne.keeps(plan, 3, 4), 'elsewhere')
  eq('⇥ next edit: line 6', ne.hint(plan, 3), 'hint')
  eq(nil, ne.hint(plan, 5), 'no hint on the edit line')
end)

---------------------------------------------------------------------------------------------------
-- Requests and answers
---------------------------------------------------------------------------------------------------

check('the request: the versioned document and the UTF-16 cursor; a newer one cancels it', function()
  reset()
  buffer({ 'naïve = 1' })
  in_insert(1, function()
    assert(ne.request(0), 'sent')
    assert(ne.request(0), 'sent again')
  end)
  eq(2, #requests, 'requests')
  eq('fimble/nextEdit', requests[1].method, 'method')
  eq(pos(0, 9), requests[1].params.position, 'position (UTF-16)')
  eq(vim.uri_from_bufnr(api.nvim_get_current_buf()), requests[1].params.textDocument.uri, 'uri')
  eq(vim.lsp.util.buf_versions[api.nvim_get_current_buf()], requests[1].params.textDocument.version, 'version')
  eq({ 1 }, cancelled, 'the first one is cancelled')
end)

check('an answer is drawn with the hint on the cursor line; the keys are mapped only while it shows', function()
  reset()
  buffer(AREA)
  local during
  in_insert(4, function()
    ne.request(0)
    answer(requests[1], vim.deepcopy(RENAME))
    during = { marks = marks(), tab = buf_map('i', '<Tab>'), esc = buf_map('n', '<Esc>') }
  end)
  eq(5, #during.marks, 'four diff marks and the hint')
  eq({ { '⇥ next edit: line 6', 'FimbleNextEditHint' } }, during.marks[1].virt_text, 'the hint, on the cursor line')
  eq(3, during.marks[1].row, 'hint row')
  assert(during.tab and during.esc, 'keys mapped while it shows')
  -- <Esc> dismissed it (and left insert mode): no keys left behind.
  eq(nil, buf_map('i', '<Tab>'), 'no <Tab> mapping after it is gone')
  eq(nil, buf_map('n', '<Esc>'), 'no <Esc> mapping after it is gone')
  eq(0, #marks(), 'dismissed')
  eq('n', api.nvim_get_mode().mode, 'left insert mode')
end)

check('an answer for text that changed since, or for another version, is dropped', function()
  reset()
  buffer(AREA)
  in_insert(4, function()
    ne.request(0)
    api.nvim_buf_set_text(0, 3, 0, 3, 0, { '#' })
    answer(requests[1], vim.deepcopy(RENAME))
    eq(0, #marks(), 'changed text')
  end)
  reset()
  buffer(AREA)
  in_insert(4, function()
    ne.request(0)
    local v = requests[1].params.textDocument.version
    answer(requests[1], vim.deepcopy(RENAME), v - 1)
    eq(0, #marks(), 'edits for another version')
  end)
end)

check('a cancelled request\'s late answer is ignored', function()
  reset()
  buffer(AREA)
  in_insert(4, function()
    ne.request(0)
    ne.request(0)
    answer(requests[1], vim.deepcopy(RENAME))
    eq(0, #marks(), 'the cancelled one')
    answer(requests[2], vim.deepcopy(RENAME))
    eq(5, #marks(), 'the newer one')
  end)
end)

check('<Tab> jumps, <Tab> again applies as one undo step and asks again; u restores the line', function()
  reset()
  buffer(AREA)
  in_insert(4, function()
    ne.request(0)
    answer(requests[1], vim.deepcopy(RENAME))
    _G.probe = function()
      _G.jumped = { api.nvim_win_get_cursor(0), n_marks() }
      _G.probe = function()
        _G.applied = api.nvim_win_get_cursor(0)
      end
    end
  end, '<Tab><F4><Tab><F4>')
  eq({ { 6, 21 }, 4 }, _G.jumped, 'the cursor at the edit, the hint gone')
  eq('    return math.pi * r * r', api.nvim_buf_get_lines(0, 5, 6, false)[1], 'applied')
  eq({ 6, 26 }, _G.applied, 'the cursor after the last edit')
  eq(2, #requests, 'asked again after applying')
  eq(0, #marks(), 'nothing shown')
  vim.cmd('silent normal! u')
  eq(AREA, api.nvim_buf_get_lines(0, 0, -1, false), 'one undo restores the line')
end)

check('an edit or a move to another line dismisses; a move onto the edit keeps it', function()
  reset()
  buffer(AREA)
  in_insert(4, function()
    ne.request(0)
    answer(requests[1], vim.deepcopy(RENAME))
    api.nvim_exec_autocmds('TextChangedI', { buffer = 0 })
    eq(5, n_marks(), 'kept: no change since it was asked')
    api.nvim_buf_set_text(0, 3, 0, 3, 0, { '#' })
    api.nvim_exec_autocmds('TextChangedI', { buffer = 0 })
    eq(0, n_marks(), 'an edit dismissed it')
  end)
  reset()
  buffer(AREA)
  in_insert(4, function()
    ne.request(0)
    answer(requests[1], vim.deepcopy(RENAME))
    api.nvim_win_set_cursor(0, { 6, 0 })
    api.nvim_exec_autocmds('CursorMovedI', { buffer = 0 })
    eq(4, n_marks(), 'kept on the edit line, without the hint')
    api.nvim_win_set_cursor(0, { 5, 0 })
    api.nvim_exec_autocmds('CursorMovedI', { buffer = 0 })
    eq(0, n_marks(), 'dismissed on another line')
  end)
end)

check('a normal-mode edit asks after the pause; an undo does not, and leaving insert mode keeps what shows', function()
  reset()
  config.options.next_edit.debounce_ms = 20
  buffer(AREA)
  api.nvim_win_set_cursor(0, { 4, 9 })
  vim.cmd('normal! x')
  api.nvim_exec_autocmds('TextChanged', { buffer = 0 })
  vim.wait(500, function()
    return #requests > 0
  end)
  eq(1, #requests, 'asked after the edit')
  answer(requests[1], vim.deepcopy(RENAME))
  eq(5, n_marks(), 'shown')
  api.nvim_exec_autocmds('TextChanged', { buffer = 0 }) -- as after <Esc>: the text is what it was asked for
  eq(5, n_marks(), 'kept')
  vim.cmd('silent normal! u')
  api.nvim_exec_autocmds('TextChanged', { buffer = 0 })
  eq(0, n_marks(), 'the undo dismissed it')
  vim.wait(200)
  eq(1, #requests, 'and asked nothing')
  config.options.next_edit.debounce_ms = 300
end)

check('<Tab> is not taken while ghost text shows, nor when nothing is shown', function()
  reset()
  buffer({ 'x = radius', 'y = radius' })
  in_insert(1, function()
    ne.request(0)
    answer(requests[1], { edit(1, 4, 1, 10, 'r') })
    ghost.suggest()
    local req = requests[#requests]
    ghost_answer(req, { { insertText = ' + 1' } })
    assert(ghost.is_visible(api.nvim_get_current_buf()), 'ghost text shows')
  end, '<Tab>')
  eq({ 'x = radius\t', 'y = radius' }, api.nvim_buf_get_lines(0, 0, -1, false), 'a plain <Tab>, the edit not applied')
  reset()
  buffer({ 'a' })
  in_insert(1, function() end, '<Tab>')
  eq({ 'a\t' }, api.nvim_buf_get_lines(0, 0, -1, false), 'nothing shown: a plain <Tab>')
end)

check('a buffer\'s own <Tab> mapping runs when the key is not ours, and comes back afterwards', function()
  reset()
  buffer(AREA)
  vim.keymap.set('i', '<Tab>', 'TAB', { buffer = true })
  in_insert(4, function()
    ne.request(0)
    answer(requests[1], vim.deepcopy(RENAME))
    eq('fimble: jump to the next edit, apply the next edit', buf_map('i', '<Tab>').desc, 'ours while it shows')
    ne.dismiss()
    eq('TAB', buf_map('i', '<Tab>').rhs, 'restored')
  end)
  vim.keymap.del('i', '<Tab>', { buffer = true })
end)

check('accepting ghost text asks for a next edit right away', function()
  reset()
  buffer({ 'x = ' })
  in_insert(1, function()
    ghost.suggest()
    local req = requests[1]
    ghost_answer(req, { { insertText = 'radius' } })
    assert(fimble.accept(), 'accepted')
  end)
  vim.wait(1000, function()
    return #requests >= 2
  end)
  local methods = {}
  for _, r in ipairs(requests) do
    methods[#methods + 1] = r.method
  end
  assert(vim.tbl_contains(methods, 'fimble/nextEdit'), 'asked: ' .. vim.inspect(methods))
end)

check('turned off (next_edit = false or the nextEdit setting): nothing is asked', function()
  for _, opts in ipairs({ { next_edit = false }, { settings = { nextEdit = false } } }) do
    reset()
    local base = { filetypes = { 'no-such-filetype' }, ghost_text = 'extmarks', auto_trigger = false }
    config.set(vim.tbl_extend('force', base, opts))
    buffer({ 'a' })
    in_insert(1, function()
      eq(false, ne.enabled(), 'enabled')
      eq(false, ne.request(0), 'request')
    end)
    eq(0, #requests, 'requests sent')
  end
  config.set({ filetypes = { 'no-such-filetype' }, ghost_text = 'extmarks', auto_trigger = false })
  eq(true, ne.enabled(), 'on again')
end)

t.finish()
