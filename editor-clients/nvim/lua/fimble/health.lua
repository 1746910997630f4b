-- :checkhealth fimble
local M = {}

function M.check()
  local health = vim.health
  local config = require('fimble.config')
  local fimble = require('fimble')
  local opts = config.options
  local server = require('fimble.server')

  health.start('fimble: Neovim')
  local v = vim.version()
  local version = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.10') ~= 1 then
    health.error('Neovim ' .. version .. ' is too old: fimble needs 0.10 or newer')
  elseif vim.fn.has('nvim-0.12') == 1 and vim.lsp.inline_completion then
    health.ok('Neovim ' .. version .. ': ghost text from the built-in vim.lsp.inline_completion')
  else
    health.ok('Neovim ' .. version .. ': ghost text drawn by fimble (extmarks)')
  end
  if fimble._setup_done then
    health.ok(('setup() called; ghost text mode: %s'):format(fimble.mode))
  else
    health.warn("require('fimble').setup() has not been called: fimble does not start", {
      "add require('fimble').setup({}) to your config (see the README)",
    })
  end

  health.start('fimble: server')
  local cmd, source = server.command()
  if not cmd then
    health.error('no server: none installed, no `cmd` in setup(), no `fimble` on $PATH', {
      'run :FimbleInstall (it installs the server into its own Python environment; see "fimble: install" below)',
      "or point setup({ cmd = { '/path/to/fimble', 'serve' } }) at a fimble you installed",
    })
  elseif vim.fn.executable(cmd[1]) ~= 1 then
    health.error(('server command %q is not executable'):format(cmd[1]), {
      source == 'cmd' and "fix setup({ cmd = ... })" or 'run :FimbleUpdate to reinstall the server',
    })
  else
    health.ok(('server command (%s): %s'):format(source, table.concat(cmd, ' ')))
    -- `fimble --version`: the command up to its `serve` (so `python -m fimble serve` works too).
    local version_cmd = {}
    for _, arg in ipairs(server.spawn_cmd(cmd)) do
      if arg == 'serve' then
        break
      end
      version_cmd[#version_cmd + 1] = arg
    end
    version_cmd[#version_cmd + 1] = '--version'
    local shown = table.concat(version_cmd, ' ')
    local ok, result = pcall(function()
      return vim.system(version_cmd, { text = true, env = opts.cmd_env, cwd = server.process_cwd() }):wait(30000)
    end)
    if not ok then
      health.error('`' .. shown .. '` could not run: ' .. tostring(result))
    elseif result.code ~= 0 then
      health.error(('`%s` failed (exit code %s): %s'):format(
        shown,
        tostring(result.code),
        vim.trim((result.stderr or '') .. (result.stdout or ''))
      ), { source == 'installed' and 'run :FimbleUpdate to reinstall the server' or nil })
    else
      local out = vim.trim((result.stdout or '') .. (result.stderr or ''))
      if out:match('^fimble') then
        health.ok('`' .. shown .. '`: ' .. out)
      else
        health.warn(('`%s` does not look like fimble: %s'):format(shown, out))
      end
    end
  end

  M.check_install(health, source)

  health.start('fimble: model')
  local model = opts.settings and opts.settings.model
  local env_model = (opts.cmd_env and opts.cmd_env.FIMBLE_MODEL) or vim.env.FIMBLE_MODEL
  if type(model) == 'string' and model ~= '' then
    local path = vim.fs.normalize(model)
    if vim.fn.filereadable(path) == 1 then
      health.ok('model: ' .. path)
    else
      health.error('model file does not exist or is not readable: ' .. path, {
        'fix settings.model in your fimble setup()',
      })
    end
  elseif env_model and env_model ~= '' then
    if vim.fn.filereadable(vim.fs.normalize(env_model)) == 1 then
      health.ok('model from $FIMBLE_MODEL: ' .. env_model)
    else
      health.error('$FIMBLE_MODEL does not exist or is not readable: ' .. env_model)
    end
  else
    health.info('no model set: the server uses its embedded default model')
  end

  health.start('fimble: trust')
  health.ok(
    'no per-project configuration is read: the server command, its environment, model, checkers and URL come '
      .. 'from your setup() only'
  )
  health.ok(('the server runs in %s, never in the project (a project cannot shadow `python -m fimble`)'):format(
    server.process_cwd()
  ))
  local settings = opts.settings or {}
  if settings.workspaceTrusted == false then
    health.ok('settings.workspaceTrusted = false: the server runs no git command and no checker')
  elseif type(settings.fixCheckers) == 'table' and #settings.fixCheckers > 0 then
    health.info(
      'settings.fixCheckers run on every project you open, and checkers such as pytest run the project\'s own code; '
        .. 'for code you do not trust, set settings.workspaceTrusted = false (no git command, no checker)'
    )
  end

  health.start('fimble: client')
  local clients = server.clients()
  if #clients > 0 then
    health.ok(('client running (id %d); last status: %s %s'):format(
      clients[1].id,
      server.status.state or '?',
      server.status.message or ''
    ))
  elseif server.retry.attempts > 0 then
    health.error(('the server failed %d time(s): %s'):format(server.retry.attempts, server.retry.last_error or '?'))
  else
    health.info('no client running (it starts when a buffer of an enabled filetype is opened)')
  end
  if server.status.state == 'error' then
    health.warn('last fimble/status error: ' .. (server.status.message or ''))
  end
end

--- :FimbleInstall's side: what is installed, from where, the last failure, and what a new install would find.
function M.check_install(health, source)
  local install = require('fimble.install')
  health.start('fimble: install')
  local root = install.root()
  local current = install.current()
  local checkout = install.source()
  local checkout_version = checkout and install.checkout_version(checkout)
  if current then
    health.ok(('fimble %s installed in %s (%s, on %s)'):format(
      current.version or '?',
      root .. '/' .. current.venv,
      current.python,
      current.installed_at or '?'
    ))
    if source ~= 'installed' then
      health.info('the installed server is not used: setup({ cmd }) or a fimble on $PATH comes first')
    end
    if checkout_version and current.version ~= checkout_version then
      health.warn(('the plugin is at %s, the installed server at %s'):format(checkout_version, current.version), {
        'run :FimbleUpdate',
      })
    end
  else
    health.info('no server installed in ' .. root)
  end
  if install.running then
    health.info(('an install is running: %d%% %s'):format(install.running.percent or 0, install.running.message or ''))
  end
  local failed = install.last_error()
  if failed and failed.message then
    health.error('the last install failed: ' .. failed.message, {
      'fix what it says, then run :FimbleInstall again; the full log is ' .. install.log_path(),
    })
  end
  if checkout then
    health.ok(('installs from %s%s'):format(checkout, checkout_version and (' (fimble ' .. checkout_version .. ')') or ''))
  else
    health.warn('this plugin is not inside a fimble checkout: :FimbleInstall needs a path', {
      ':FimbleInstall /path/to/fimble (a checkout or a wheel), or setup({ install = { source = ... } })',
    })
  end
  local python, problem = install.find_python()
  if not python then
    health.error(problem)
    return
  end
  health.ok(('Python %s: %s'):format(python.version, python.executable))
  if vim.fn.filereadable(install.script()) ~= 1 then
    health.error('the installer is missing: ' .. install.script())
    return
  end
  local ok, result = pcall(function()
    return vim.system(
      { python.executable, '-I', install.script(), 'check', '--root', root },
      { text = true, cwd = require('fimble.server').process_cwd() }
    ):wait(30000)
  end)
  local report = ok
    and result.code == 0
    and select(2, pcall(vim.json.decode, result.stdout or '', { luanil = { object = true, array = true } }))
    or nil
  if type(report) ~= 'table' then
    health.warn('the installer could not check this system: ' .. (ok and (result.stderr or '') or tostring(result)))
    return
  end
  for _, p in ipairs(report.problems or {}) do
    health.error(p.message)
  end
  local tools = report.toolchain or {}
  if tools.c and tools.cxx then
    health.ok(('C/C++ compiler: %s, %s; CMake: %s'):format(
      tools.c,
      tools.cxx,
      tools.cmake or 'none (pip fetches it when it can reach the package index)'
    ))
  else
    health.warn('no C/C++ compiler: only a prebuilt llama-cpp-python wheel can be installed', {
      'to compile llama.cpp, ' .. (report.compiler_hint or 'install a C/C++ compiler and CMake'),
    })
  end
  health.ok(('free disk space in %s: %d MB (an install needs about %d MB)'):format(
    root,
    report.free_mb or 0,
    report.min_free_mb or 0
  ))
end

return M
