-- Unit test of what :FimbleInstall leaves and how the plugin uses it: the server command (setup's `cmd`, else the
-- installed server, else `fimble` on $PATH, else "not installed"), an install that is half there is never used,
-- and the Python that installs (3.11+, what to say when there is none):
--
--   nvim --headless --clean -l editor-clients/nvim/tests/install_spec.lua
--
-- (tests/editors/test_nvim_lua.py runs it from pytest; the real installs are in tests/editors/test_nvim_install.py.)
local t = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')
local check, eq = t.check, t.eq

local install = require('fimble.install')
local server = require('fimble.server')
local config = require('fimble.config')

local tmp = vim.fn.fnamemodify(vim.fn.tempname(), ':p')
local bin = tmp .. '/bin'
local root = tmp .. '/data/fimble'
vim.fn.mkdir(bin, 'p')
vim.env.PATH = bin
config.set({ install = { root = root } })

local function executable(path, lines)
  vim.fn.mkdir(vim.fn.fnamemodify(path, ':h'), 'p')
  vim.fn.writefile(lines or { '#!/bin/sh', 'exit 0' }, path)
  vim.fn.setfperm(path, 'rwxr-xr-x')
  return path
end

local function write_current(data)
  vim.fn.mkdir(root, 'p')
  vim.fn.writefile({ vim.json.encode(data) }, root .. '/current.json')
end

check('nothing configured, installed or on $PATH: no command, and the statusline says so', function()
  eq(nil, (server.command()), 'command')
  eq(nil, install.current(), 'current')
  server.on_not_installed()
  eq('not installed', server.status.state, 'state')
  require('fimble')._setup_done = true
  eq('fimble: not installed', require('fimble').status(), 'statusline')
end)

check('an install is used only when current.json names a venv whose Python is there', function()
  write_current({ venv = 'venv-1', version = '0.1.0' })
  eq(nil, install.current(), 'no python yet')
  vim.fn.writefile({ '{ half' }, root .. '/current.json')
  eq(nil, install.current(), 'half written')
  write_current({ venv = '../elsewhere', version = '0.1.0' })
  eq(nil, install.current(), 'outside the install folder')
  local python = executable(root .. '/venv-1/bin/python')
  write_current({ venv = 'venv-1', version = '0.1.0', previous = 'venv-0' })
  local current = install.current()
  eq(python, current.python, 'python')
  eq('venv-0', current.previous, 'previous')
end)

check('the installed server comes before $PATH and after setup({ cmd }); it runs isolated (-I)', function()
  executable(bin .. '/fimble')
  local python = root .. '/venv-1/bin/python'
  config.set({ install = { root = root }, server_args = { '--log-file', '/tmp/x.log' } })
  local cmd, source = server.command()
  eq({ python, '-I', '-u', '-m', 'fimble', 'serve', '--log-file', '/tmp/x.log' }, cmd, 'installed command')
  eq('installed', source, 'source')
  config.set({ install = { root = root }, cmd = { '/opt/fimble/bin/fimble', 'serve' } })
  eq({ { '/opt/fimble/bin/fimble', 'serve' }, 'cmd' }, { server.command() }, 'cmd wins')
  vim.fn.delete(root .. '/current.json')
  config.set({ install = { root = root } })
  eq({ { 'fimble', 'serve' }, 'PATH' }, { server.command() }, 'then $PATH')
end)

check('the venv an update replaced goes once the new server is up', function()
  executable(root .. '/venv-2/bin/python')
  vim.fn.mkdir(root .. '/venv-1', 'p')
  write_current({ venv = 'venv-2', version = '0.1.0', previous = 'venv-1' })
  server.command_source = 'installed'
  server.on_status(nil, { state = 'ready', message = 'ready' })
  eq(0, vim.fn.isdirectory(root .. '/venv-1'), 'previous removed')
  eq(1, vim.fn.isdirectory(root .. '/venv-2'), 'current kept')
end)

check('Python: the configured one first, then python3 and python; 3.11 or newer; what to say otherwise', function()
  local old = executable(bin .. '/python3', { '#!/bin/sh', 'echo 3.9.2', 'echo ' .. bin .. '/python3' })
  eq({ { old } }, install.python_candidates(), 'python3 on PATH')
  local found, problem = install.find_python()
  eq(nil, found, 'too old')
  assert(problem:find('needs Python 3.11 or newer, and fimble found only ' .. old .. ' is 3.9.2', 1, true), problem)
  assert(problem:find(':FimbleInstall again', 1, true), problem)
  vim.fn.delete(old)
  local _, none = install.find_python()
  assert(none:find('found none (no python3 or python on $PATH)', 1, true), none)
  local good = executable(tmp .. '/py/bin/python3.12', { '#!/bin/sh', 'echo 3.12.1', 'echo /usr/bin/python3.12' })
  config.set({ install = { root = root, python = good } })
  eq({ executable = '/usr/bin/python3.12', version = '3.12.1' }, install.find_python(), 'configured')
end)

check('the source: this plugin\'s own fimble checkout', function()
  local checkout = vim.fn.fnamemodify(t.plugin_dir, ':h:h')
  config.set({ install = { root = root } })
  eq(checkout, install.source(), 'the checkout around the plugin')
  assert(install.checkout_version(checkout):match('^%d+%.%d+'), 'its version')
  eq(nil, install.checkout_version(tmp), 'not a checkout')
  eq(1, vim.fn.filereadable(install.script()), 'the installer')
end)

check('while an install runs the statusline shows its share', function()
  install.running = { percent = 45.4, message = 'Compiling llama.cpp - 25%' }
  eq('fimble: installing 45%', require('fimble').status(), 'statusline')
  install.running = nil
end)

vim.fn.delete(tmp, 'rf')
t.finish()
