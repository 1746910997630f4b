-- Unit test of the Neovim 0.12+ branch (vim.lsp.inline_completion) with the built-in stubbed, so
-- that it runs on any Neovim >= 0.10:
--
--   nvim --headless --clean -l editor-clients/nvim/tests/builtin_0_12_spec.lua
--
-- Prints one line per check and exits with status 1 when one fails.
-- (tests/editors/test_nvim_lua.py runs it from pytest.)
local t = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')
local check, eq = t.check, t.eq
vim.o.showmode = false

local api = vim.api
local notes = {}

---------------------------------------------------------------------------------------------------
-- Stubs: pretend to be Neovim 0.12 with vim.lsp.inline_completion.
---------------------------------------------------------------------------------------------------
local calls = {}
local next_get_result = true
local next_item = nil

local stub = {
  enable = function(enable, filter)
    table.insert(calls, { 'enable', enable, filter })
  end,
  is_enabled = function()
    return true
  end,
  get = function(opts)
    table.insert(calls, { 'get', opts and vim.tbl_keys(opts) or nil })
    if next_item and opts and opts.on_accept then
      opts.on_accept(next_item)
    end
    return next_get_result
  end,
  select = function(opts)
    table.insert(calls, { 'select', opts })
  end,
}

local real_has = vim.fn.has
vim.fn.has = function(feature)
  if feature == 'nvim-0.12' then
    return 1
  end
  return real_has(feature)
end
rawset(vim.lsp, 'inline_completion', stub)
package.loaded['vim.lsp.inline_completion'] = stub

local FAKE_CLIENT_ID = 4242
local real_get_client_by_id = vim.lsp.get_client_by_id
vim.lsp.get_client_by_id = function(id)
  if id == FAKE_CLIENT_ID then
    return { id = FAKE_CLIENT_ID, name = 'fimble', offset_encoding = 'utf-16' }
  end
  return real_get_client_by_id(id)
end

local fimble = require('fimble')
fimble.setup({
  -- Never start a real server in this test.
  filetypes = { 'no-such-filetype' },
  accept_tab = true,
})

local function mapping(lhs)
  local m = vim.fn.maparg(lhs, 'i', false, true)
  assert(m and m.callback, 'no insert-mode mapping for ' .. lhs)
  return m.callback
end

--- Runs `keys` in insert mode (appending at the end of the line) and returns the cursor position
--- seen in insert mode right after them.
local insert_cursor
vim.keymap.set('i', '<F2>', function()
  insert_cursor = api.nvim_win_get_cursor(0)
end)
local function in_insert(keys)
  insert_cursor = nil
  api.nvim_feedkeys(vim.keycode('A' .. keys .. '<F2><Esc>'), 'tx', false)
  return insert_cursor
end

local function fresh_buffer(lines)
  vim.cmd('enew!')
  local buf = api.nvim_get_current_buf()
  vim.bo[buf].buftype = 'nofile'
  api.nvim_buf_set_lines(buf, 0, -1, false, lines or { '' })
  return buf
end

check('Neovim 0.12 is detected and the built-in is used', function()
  eq('builtin', fimble.mode, 'mode')
end)

check('no extmark ghost-text autocmds in built-in mode', function()
  local ok, autocmds = pcall(api.nvim_get_autocmds, { group = 'fimble.ghost' })
  eq(0, ok and #autocmds or 0, 'autocmds in group fimble.ghost')
end)

check('LspAttach of the fimble client enables vim.lsp.inline_completion for the buffer', function()
  local buf = fresh_buffer()
  calls = {}
  api.nvim_exec_autocmds('LspAttach', { buffer = buf, data = { client_id = FAKE_CLIENT_ID } })
  eq({ { 'enable', true, { bufnr = buf } } }, calls, 'calls')
end)

check('LspAttach of another client does not enable it', function()
  local buf = fresh_buffer()
  calls = {}
  vim.lsp.get_client_by_id = function(id)
    if id == 7 then
      return { id = 7, name = 'other' }
    end
    return real_get_client_by_id(id)
  end
  api.nvim_exec_autocmds('LspAttach', { buffer = buf, data = { client_id = 7 } })
  vim.lsp.get_client_by_id = function(id)
    if id == FAKE_CLIENT_ID then
      return { id = FAKE_CLIENT_ID, name = 'fimble', offset_encoding = 'utf-16' }
    end
    return real_get_client_by_id(id)
  end
  eq({}, calls, 'calls')
end)

check('accept key (<M-l>) calls get()', function()
  fresh_buffer()
  calls = {}
  next_get_result = true
  mapping('<M-l>')()
  eq({ { 'get', nil } }, calls, 'calls')
end)

check('next / previous keys call select({ count = 1 / -1 })', function()
  fresh_buffer()
  calls = {}
  mapping('<M-]>')()
  mapping('<M-[>')()
  eq({ { 'select', { count = 1 } }, { 'select', { count = -1 } } }, calls, 'calls')
end)

check('<Tab> accepts through get() when accept_tab is set', function()
  local buf = fresh_buffer()
  calls = {}
  next_get_result = true
  api.nvim_feedkeys(vim.keycode('i<Tab>x<Esc>'), 'tx', false)
  eq({ { 'get', nil } }, calls, 'calls')
  eq({ 'x' }, api.nvim_buf_get_lines(buf, 0, -1, false), 'buffer (no literal tab)')
end)

check('<Tab> falls back to a literal tab when get() has nothing', function()
  local buf = fresh_buffer()
  vim.bo[buf].expandtab = false
  calls = {}
  next_get_result = false
  api.nvim_feedkeys(vim.keycode('i<Tab>x<Esc>'), 'tx', false)
  next_get_result = true
  eq({ { 'get', nil } }, calls, 'calls')
  eq({ '\tx' }, api.nvim_buf_get_lines(buf, 0, -1, false), 'buffer')
end)

check('accept word inserts the next word through get{ on_accept }', function()
  local buf = fresh_buffer({ 'local x = ' })
  calls = {}
  -- 0.12 items carry a byte range (a vim.Range / Range4); the text covers what was typed too.
  next_item = { client_id = FAKE_CLIENT_ID, insert_text = 'x = foo(bar)', range = { 0, 6, 0, 10 } }
  local cursor = in_insert('<M-Right>')
  next_item = nil
  eq({ { 'get', { 'on_accept' } } }, calls, 'calls')
  eq({ 'local x = foo' }, api.nvim_buf_get_lines(buf, 0, -1, false), 'buffer')
  eq({ 1, 13 }, cursor, 'cursor')
end)

check('accept line inserts up to the end of the line (LSP-shaped UTF-16 range)', function()
  local buf = fresh_buffer({ 'é = ' }) -- the cursor goes after "é = " (é: 2 bytes, 1 UTF-16 unit)
  next_item = {
    client_id = FAKE_CLIENT_ID,
    insert_text = { kind = 'snippet', value = 'é = compute()\nprint(é)' },
    range = { start = { line = 0, character = 0 }, ['end'] = { line = 0, character = 4 } },
  }
  local cursor = in_insert('<M-C-Right>')
  next_item = nil
  eq({ 'é = compute()' }, api.nvim_buf_get_lines(buf, 0, -1, false), 'buffer')
  eq({ 1, 14 }, cursor, 'cursor') -- #'é = compute()' == 14 bytes
end)

check('accept line on a vim.Range-style item (start_row/start_col)', function()
  local buf = fresh_buffer({ 'def f():' })
  next_item = {
    client_id = FAKE_CLIENT_ID,
    insert_text = '\n    return 1\n',
    range = { start_row = 0, start_col = 8, end_row = 0, end_col = 8 },
  }
  local cursor = in_insert('<M-C-Right>')
  next_item = nil
  eq({ 'def f():', '    return 1' }, api.nvim_buf_get_lines(buf, 0, -1, false), 'buffer')
  eq({ 2, 12 }, cursor, 'cursor')
end)

check('dismiss re-enables the built-in when it shows a candidate', function()
  local buf = fresh_buffer({ 'abc' })
  local ns = api.nvim_create_namespace('nvim.lsp.inline_completion')
  api.nvim_buf_set_extmark(buf, ns, 0, 3, { virt_text = { { 'def', 'Comment' } }, virt_text_pos = 'inline' })
  calls = {}
  mapping('<C-]>')()
  eq({ { 'enable', false, { bufnr = buf } }, { 'enable', true, { bufnr = buf } } }, calls, 'calls')
  api.nvim_buf_clear_namespace(buf, ns, 0, -1)
end)

check('dismiss with nothing shown does not touch the built-in', function()
  fresh_buffer({ 'abc' })
  calls = {}
  eq(false, fimble.dismiss(), 'dismiss()')
  eq({}, calls, 'calls')
end)

check('status() works in built-in mode', function()
  eq('string', type(fimble.status()), 'type')
end)

check('ghost_text = "extmarks" forces the extmark renderer even on 0.12', function()
  fimble.setup({ filetypes = { 'no-such-filetype' }, ghost_text = 'extmarks' })
  eq('extmarks', fimble.mode, 'mode')
  local autocmds = api.nvim_get_autocmds({ group = 'fimble.ghost' })
  assert(#autocmds > 0, 'extmark autocmds are installed')
end)

check('without vim.lsp.inline_completion (Neovim 0.10/0.11) the extmark renderer is used', function()
  vim.fn.has = real_has
  rawset(vim.lsp, 'inline_completion', nil)
  package.loaded['vim.lsp.inline_completion'] = nil
  fimble.setup({ filetypes = { 'no-such-filetype' } })
  if real_has('nvim-0.12') == 1 then
    table.insert(notes, 'real Neovim is 0.12+: built-in expected')
    eq('builtin', fimble.mode, 'mode')
  else
    eq('extmarks', fimble.mode, 'mode')
  end
end)

for _, n in ipairs(notes) do
  io.stdout:write('note ' .. n .. '\n')
end
t.finish()
