-- Unit test of where the plugin starts its processes: never in the project (a project that ships a
-- `fimble/` package would otherwise run its own code through `python -m fimble`), with the program
-- the user configured and nothing from the project:
--
--   nvim --headless --clean -l editor-clients/nvim/tests/server_spec.lua
--
-- Prints one line per check and exits with status 1 when one fails.
-- (tests/editors/test_nvim_lua.py runs it from pytest.)
local t = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')
local plugin_dir, check, eq = t.plugin_dir, t.check, t.eq


local server = require('fimble.server')

-- A project with root marker, and Neovim working in it.
local project = vim.fn.fnamemodify(vim.fn.tempname(), ':p')
vim.fn.mkdir(project .. '/.git', 'p')
vim.fn.mkdir(project .. '/bin', 'p')
vim.cmd.cd(project)

check('processes run in the plugin folder, not the project', function()
  local cwd = server.process_cwd()
  eq(vim.fs.normalize(plugin_dir), vim.fs.normalize(cwd), 'process cwd')
  eq(1, vim.fn.isdirectory(cwd), 'it exists')
  eq(1, vim.fn.filereadable(cwd .. '/lua/fimble/server.lua'), 'it is the plugin')
  eq(true, vim.fs.normalize(cwd) ~= vim.fs.normalize(project), 'not the project')
end)

check('spawn_cmd: a bare name stays a $PATH lookup, a relative path is taken from Neovim\'s directory', function()
  eq({ 'fimble', 'serve' }, server.spawn_cmd({ 'fimble', 'serve' }), 'bare name')
  eq({ '/opt/fimble/bin/fimble', 'serve' }, server.spawn_cmd({ '/opt/fimble/bin/fimble', 'serve' }), 'absolute')
  eq(
    { vim.fs.normalize(project .. '/bin/fimble'), 'serve', '--log-file', 'x.log' },
    { vim.fs.normalize(server.spawn_cmd({ './bin/fimble', 'serve', '--log-file', 'x.log' })[1]), 'serve', '--log-file', 'x.log' },
    'relative'
  )
  local cmd = { 'bin/fimble' }
  server.spawn_cmd(cmd)
  eq({ 'bin/fimble' }, cmd, 'the option itself is not changed')
end)

check('the server is started in the plugin folder with the configured command and the project as root', function()
  local exe = project .. '/bin/fake-fimble'
  vim.fn.writefile({ '#!/bin/sh', 'exit 0' }, exe)
  vim.fn.setfperm(exe, 'rwxr-xr-x')
  require('fimble').setup({ cmd = { './bin/fake-fimble', 'serve' }, settings = { maxTokens = 8 } })
  local seen_config, spawned
  local real_start, real_rpc_start = vim.lsp.start, vim.lsp.rpc.start
  vim.lsp.start = function(cfg)
    seen_config = cfg
    return nil
  end
  vim.lsp.rpc.start = function(cmd, _, opts)
    spawned = { cmd = cmd, opts = opts }
    error('not starting anything in this test')
  end
  local ok = pcall(function()
    vim.cmd.edit(project .. '/a.py')
    vim.bo.filetype = 'python'
    server.reset_retry()
    server.start(vim.api.nvim_get_current_buf())
    assert(seen_config, 'vim.lsp.start was called')
    pcall(seen_config.cmd, { on_exit = function() end })
  end)
  vim.lsp.start, vim.lsp.rpc.start = real_start, real_rpc_start
  server.reset_retry()
  assert(ok)
  eq(vim.fs.normalize(project), vim.fs.normalize(seen_config.root_dir), 'root_dir')
  eq({ maxTokens = 8 }, seen_config.init_options, 'init_options: setup() settings only')
  assert(spawned, 'the command was spawned')
  eq(vim.fs.normalize(exe), vim.fs.normalize(spawned.cmd[1]), 'the program, made absolute')
  eq('serve', spawned.cmd[2], 'its arguments')
  eq(vim.fs.normalize(server.process_cwd()), vim.fs.normalize(spawned.opts.cwd), 'spawned in the plugin folder')
end)

vim.fn.delete(project, 'rf')
t.finish()
