-- Unit test of the extmark ghost text (Neovim 0.10/0.11 path) against a fake LSP client, so that
-- ranges, UTF-16, stale responses and cancellation are checked with exact, known suggestions:
--
--   nvim --headless --clean -l editor-clients/nvim/tests/ghost_spec.lua
--
-- Prints one line per check and exits with status 1 when one fails.
-- (tests/editors/test_nvim_lua.py runs it from pytest.)
local t = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')
local check, eq = t.check, t.eq
vim.o.showmode = false

local api = vim.api

---------------------------------------------------------------------------------------------------
-- A fake fimble client: records requests; the test answers them by calling the handler.
---------------------------------------------------------------------------------------------------
local requests, cancelled = {}, {}
local fake = { id = 99, name = 'fimble', initialized = true, offset_encoding = 'utf-16' }
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
-- 0.10 calls client.request(...) with a dot.
if vim.fn.has('nvim-0.11') == 0 then
  for _, m in ipairs({ 'request', 'cancel_request', 'is_stopped', 'notify' }) do
    local f = fake[m]
    fake[m] = function(...)
      return f(fake, ...)
    end
  end
end

local fimble = require('fimble')
fimble.setup({ filetypes = { 'no-such-filetype' }, ghost_text = 'extmarks', auto_trigger = false })
local server = require('fimble.server')
local ghost = require('fimble.ghost')
server.get_client = function()
  return fake
end

local function reset()
  requests, cancelled = {}, {}
end

--- Runs `fn` inside insert mode, with the cursor at the end of line `row` (1-based).
local pending_fn, pending_err
vim.keymap.set('i', '<F3>', function()
  local ok, err = xpcall(pending_fn, debug.traceback)
  if not ok then
    pending_err = err
  end
end)
local function in_insert(lines, row, fn)
  vim.cmd('enew!')
  vim.bo.buftype = 'nofile'
  api.nvim_buf_set_lines(0, 0, -1, false, lines)
  api.nvim_win_set_cursor(0, { row, 0 })
  pending_fn, pending_err = fn, nil
  api.nvim_feedkeys(vim.keycode('A<F3><Esc>'), 'tx', false)
  if pending_err then
    error(pending_err, 0)
  end
end

local function marks()
  return api.nvim_buf_get_extmarks(0, ghost.ns, 0, -1, { details = true })
end

local function answer(req, items)
  req.handler(nil, { items = items }, { method = req.method, client_id = fake.id, bufnr = req.bufnr })
end

local function pos(line, character)
  return { line = line, character = character }
end

check('the request carries the UTF-16 cursor position and the trigger kind', function()
  reset()
  in_insert({ 'naïve = "é"' }, 1, function()
    assert(ghost.suggest(), 'request sent')
  end)
  eq(1, #requests, 'requests')
  eq('textDocument/inlineCompletion', requests[1].method, 'method')
  -- 'naïve = "é"' is 13 bytes, 11 UTF-16 code units.
  eq(pos(0, 11), requests[1].params.position, 'position')
  eq({ triggerKind = 1 }, requests[1].params.context, 'context')
end)

check('a multi-line suggestion: inline text for the first line, virt_lines for the rest', function()
  reset()
  in_insert({ 'def f(é):' }, 1, function()
    ghost.suggest()
    -- The range starts before the cursor: the typed part is not shown again.
    answer(requests[1], {
      { insertText = 'def f(é):\n    return é\n', range = { start = pos(0, 0), ['end'] = pos(0, 9) } },
    })
    local m = marks()
    eq(1, #m, 'extmarks')
    eq({ 0, 10 }, { m[1][2], m[1][3] }, 'extmark position (bytes)')
    eq(nil, m[1][4].virt_text, 'no inline text (the first line is complete)')
    eq({ { { '    return é', 'FimbleSuggestion' } }, { { '', 'FimbleSuggestion' } } }, m[1][4].virt_lines, 'virt_lines')
    eq('\n    return é\n', ghost.get_suggestion(), 'suggestion')
  end)
end)

check('accept replaces the range (UTF-16 end after the cursor) and moves the cursor to its end', function()
  reset()
  local cursor
  in_insert({ 'print(é)' }, 1, function()
    api.nvim_win_set_cursor(0, { 1, 8 }) -- between "é" and ")"
    ghost.suggest()
    -- Replace "print(é)" (8 UTF-16 units) with a longer call; the ")" after the cursor is part of it.
    answer(requests[1], { { insertText = 'print(é, sep="")', range = { start = pos(0, 0), ['end'] = pos(0, 8) } } })
    local m = marks()
    eq({ { ', sep=""', 'FimbleSuggestion' } }, m[1][4].virt_text, 'the replaced ")" is not shown twice')
    assert(fimble.accept(), 'accepted')
    cursor = api.nvim_win_get_cursor(0)
    eq(0, #marks(), 'ghost text cleared')
  end)
  eq({ 'print(é, sep="")' }, api.nvim_buf_get_lines(0, 0, -1, false), 'buffer')
  eq({ 1, #'print(é, sep="")' }, cursor, 'cursor')
end)

check('accept of a multi-line suggestion puts the cursor on its last line', function()
  reset()
  local cursor
  in_insert({ 'if x:' }, 1, function()
    ghost.suggest()
    answer(requests[1], { { insertText = '\n    y = 1\n    z = 2' } })
    assert(fimble.accept())
    cursor = api.nvim_win_get_cursor(0)
  end)
  eq({ 'if x:', '    y = 1', '    z = 2' }, api.nvim_buf_get_lines(0, 0, -1, false), 'buffer')
  eq({ 3, 9 }, cursor, 'cursor')
end)

check('accept word / accept line insert a part and keep showing the rest', function()
  reset()
  local after_word, after_line, final
  in_insert({ 'x = ' }, 1, function()
    ghost.suggest()
    answer(requests[1], { { insertText = 'compute(a, b)\nprint(x)' } })
    assert(fimble.accept_word())
    after_word = { api.nvim_get_current_line(), ghost.get_suggestion() }
    assert(fimble.accept_line())
    after_line = { api.nvim_get_current_line(), ghost.get_suggestion() }
    assert(fimble.accept_line())
    final = { api.nvim_buf_get_lines(0, 0, -1, false), ghost.get_suggestion(), api.nvim_win_get_cursor(0) }
  end)
  eq({ 'x = compute', '(a, b)\nprint(x)' }, after_word, 'after accept word')
  eq({ 'x = compute(a, b)', '\nprint(x)' }, after_line, 'after accept line')
  eq({ { 'x = compute(a, b)', 'print(x)' }, nil, { 2, 8 } }, final, 'after the last line')
end)

check('a response for an older buffer state is dropped', function()
  reset()
  in_insert({ 'abc' }, 1, function()
    ghost.suggest()
    api.nvim_buf_set_text(0, 0, 3, 0, 3, { 'd' })
    api.nvim_win_set_cursor(0, { 1, 4 })
    answer(requests[1], { { insertText = 'xyz' } })
    eq(0, #marks(), 'extmarks')
  end)
end)

check('a new request cancels the one in flight, whose late answer is ignored', function()
  reset()
  in_insert({ 'abc' }, 1, function()
    ghost.suggest()
    ghost.suggest()
    eq({ 1 }, cancelled, 'cancelled ids')
    answer(requests[1], { { insertText = 'OLD' } })
    eq(0, #marks(), 'the cancelled answer is not shown')
    answer(requests[2], { { insertText = 'NEW' } })
    eq('NEW', ghost.get_suggestion(), 'suggestion')
  end)
end)

check('items that do not match the typed text are dropped; snippets are shown as text', function()
  reset()
  in_insert({ 'foo' }, 1, function()
    ghost.suggest()
    answer(requests[1], {
      { insertText = 'bar()', range = { start = pos(0, 0), ['end'] = pos(0, 3) } },
      { insertText = { kind = 'snippet', value = 'foo(${1:arg})$0' }, range = { start = pos(0, 0), ['end'] = pos(0, 3) } },
    })
    eq('(arg)', ghost.get_suggestion(), 'suggestion')
  end)
end)

check('next / previous cycle through the candidates, with an index label', function()
  reset()
  in_insert({ 'a' }, 1, function()
    ghost.suggest()
    answer(requests[1], { { insertText = '1' }, { insertText = '2' }, { insertText = '3' } })
    eq('1', ghost.get_suggestion(), 'first')
    fimble.next()
    eq('2', ghost.get_suggestion(), 'next')
    eq({ { '2', 'FimbleSuggestion' }, { ' (2/3)', 'FimbleSuggestionIndex' } }, marks()[1][4].virt_text, 'label')
    fimble.prev()
    fimble.prev()
    eq('3', ghost.get_suggestion(), 'previous wraps')
  end)
end)

check('next with a single candidate asks the server for more (triggerKind Invoked)', function()
  reset()
  in_insert({ 'a' }, 1, function()
    ghost.suggest()
    answer(requests[1], { { insertText = 'one' } })
    fimble.next()
    eq(2, #requests, 'requests')
    eq({ triggerKind = 1 }, requests[2].params.context, 'context')
    eq('one', ghost.get_suggestion(), 'still shown while asking')
    answer(requests[2], { { insertText = 'one' }, { insertText = 'two' } })
    eq('two', ghost.get_suggestion(), 'moved to the new candidate')
  end)
end)

check('dismiss clears the ghost text and says whether there was one', function()
  reset()
  in_insert({ 'a' }, 1, function()
    ghost.suggest()
    answer(requests[1], { { insertText = 'bc' } })
    eq(true, fimble.dismiss(), 'first dismiss')
    eq(0, #marks(), 'extmarks')
    eq(false, fimble.dismiss(), 'second dismiss')
  end)
end)

check('no request outside insert mode or without a client', function()
  reset()
  vim.cmd('enew!')
  eq(false, ghost.request(api.nvim_get_current_buf()), 'normal mode')
  server.get_client = function()
    return nil
  end
  in_insert({ 'a' }, 1, function()
    eq(false, ghost.suggest(), 'no client')
  end)
  server.get_client = function()
    return fake
  end
  eq(0, #requests, 'requests')
end)

check('the debounce timer sends one request after the last change', function()
  reset()
  fimble.setup({ filetypes = { 'no-such-filetype' }, ghost_text = 'extmarks', debounce_ms = 40 })
  server.get_client = function()
    return fake
  end
  in_insert({ 'a' }, 1, function()
    local buf = api.nvim_get_current_buf()
    ghost.schedule(buf)
    ghost.schedule(buf)
    ghost.schedule(buf)
    eq(0, #requests, 'no request before the delay')
    vim.wait(2000, function()
      return #requests > 0
    end)
    vim.wait(100)
  end)
  eq(1, #requests, 'requests after the debounce')
  eq({ triggerKind = 2 }, requests[1].params.context, 'automatic trigger')
end)

t.finish()
