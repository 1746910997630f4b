-- Installing the fimble server from Neovim (:FimbleInstall, :FimbleUpdate, lazy.nvim's `build`).
--
-- The installer is editor-clients/install/fimble_install.py, shared with the VS Code extension: it creates a venv
-- under stdpath('data')/fimble beside the current one, pip installs this plugin's own fimble checkout (with the
-- default model) into it, checks that it works, and only then names it in current.json. A failure or a cancel
-- leaves the previous install in use; the venv it replaced is removed once a server from the new one is up.
-- Every process runs in the plugin's folder or the install folder, never in the project.
local config = require('fimble.config')
local util = require('fimble.util')

local api = vim.api
local M = {}

M.MIN_PYTHON = { 3, 11 }

--- editor-clients/nvim, and the repository checkout it lives in.
local plugin_dir = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h:h')
local is_windows = vim.fn.has('win32') == 1

--- What an install is doing: nil when none runs.
---@type { job: vim.SystemObj?, step: string?, title: string?, percent: number, message: string, root: string, started: number }?
M.running = nil

--- The outcome of the last install this session ({ kind = 'done'|'error'|'cancelled', message = ... }).
M.last = nil

local function opts()
  return config.options.install or {}
end

function M.root()
  local root = opts().root
  if type(root) == 'string' and root ~= '' then
    return vim.fs.normalize(root)
  end
  return vim.fs.joinpath(vim.fn.stdpath('data'), 'fimble')
end

function M.script()
  return vim.fs.normalize(vim.fn.fnamemodify(plugin_dir, ':h') .. '/install/fimble_install.py')
end

local function read_file(path)
  local fd = io.open(path, 'r')
  if not fd then
    return nil
  end
  local text = fd:read('*a')
  fd:close()
  return text
end

local function read_json(path)
  local text = read_file(path)
  if not text then
    return nil
  end
  local ok, data = pcall(vim.json.decode, text, { luanil = { object = true, array = true } })
  return ok and type(data) == 'table' and data or nil
end

--- The version in a fimble checkout's pyproject.toml, or nil when `dir` is not one.
function M.checkout_version(dir)
  local text = read_file(dir .. '/pyproject.toml')
  if not text or not text:match('\nname%s*=%s*"fimble"') then
    return nil
  end
  return text:match('\nversion%s*=%s*"([^"]+)"')
end

--- What pip installs: setup({ install = { source } }), else the checkout this plugin lives in.
function M.source()
  local source = opts().source
  if type(source) == 'string' and source ~= '' then
    return vim.fs.normalize(source)
  end
  local checkout = vim.fn.fnamemodify(plugin_dir, ':h:h')
  return M.checkout_version(checkout) and checkout or nil
end

local function venv_python(venv_dir)
  return is_windows and (venv_dir .. '/Scripts/python.exe') or (venv_dir .. '/bin/python')
end

--- The install current.json names, when its venv's Python is there (anything else is never used).
---@return { venv: string, python: string, version: string, source: string?, source_id: string?, previous: string?, installed_at: string?, model: string? }?
function M.current()
  local root = M.root()
  local data = read_json(root .. '/current.json')
  if not data or type(data.venv) ~= 'string' or not data.venv:match('^venv%-[%w%.%-_]+$') then
    return nil
  end
  local python = venv_python(root .. '/' .. data.venv)
  if vim.fn.executable(python) ~= 1 then
    return nil
  end
  data.python = python
  if type(data.previous) ~= 'string' or not data.previous:match('^venv%-[%w%.%-_]+$') then
    data.previous = nil
  end
  return data
end

--- Why the last attempt failed (last-error.json), if it did.
function M.last_error()
  return read_json(M.root() .. '/last-error.json')
end

function M.log_path()
  return M.root() .. '/install.log'
end

--- The installed server's command: isolated (-I), so nothing from $PYTHONPATH or the working directory reaches it.
function M.command(args)
  local current = M.current()
  if not current then
    return nil
  end
  local cmd = { current.python, '-I', '-u', '-m', 'fimble', 'serve' }
  vim.list_extend(cmd, args or {})
  return cmd
end

--- Once a server from the new install is up, the venv it replaced goes.
function M.remove_previous()
  local current = M.current()
  if not current or not current.previous then
    return
  end
  local dir = M.root() .. '/' .. current.previous
  if vim.fn.isdirectory(dir) == 1 then
    vim.fn.delete(dir, 'rf')
  end
end

-- ---- Finding a Python ----------------------------------------------------------------------------------------

--- Prints the version and the real executable; runs on any Python (2.7 too, to say it is too old).
local PROBE = "import sys; print('%d.%d.%d' % tuple(sys.version_info[:3])); print(sys.executable)"

--- Pythons to try: setup({ install = { python } }), then python3 and python on $PATH (py -3 on Windows).
function M.python_candidates()
  local out, seen = {}, {}
  local function add(cmd)
    local key = table.concat(cmd, ' ')
    if cmd[1] and cmd[1] ~= '' and not seen[key] then
      seen[key] = true
      out[#out + 1] = cmd
    end
  end
  local configured = opts().python
  if type(configured) == 'string' and configured ~= '' then
    add({ vim.fs.normalize(configured) })
  elseif type(configured) == 'table' and #configured > 0 then
    add(vim.deepcopy(configured))
  end
  if is_windows and vim.fn.executable('py') == 1 then
    add({ vim.fn.exepath('py'), '-3' })
  end
  for _, name in ipairs({ 'python3', 'python' }) do
    local path = vim.fn.exepath(name)
    -- The Microsoft Store's python.exe stub opens the Store instead of running anything.
    if path ~= '' and not path:lower():find('windowsapps', 1, true) then
      add({ path })
    end
  end
  return out
end

local function new_enough(v)
  return v[1] > M.MIN_PYTHON[1] or (v[1] == M.MIN_PYTHON[1] and v[2] >= M.MIN_PYTHON[2])
end

--- The first candidate that is Python 3.11+: { executable, version }, or nil and the message saying what to do.
function M.find_python()
  local found = {}
  for _, cmd in ipairs(M.python_candidates()) do
    local argv = vim.list_extend(vim.deepcopy(cmd), { '-c', PROBE })
    local ok, result = pcall(function()
      return vim.system(argv, { text = true, cwd = plugin_dir }):wait(20000)
    end)
    local out = ok and result.code == 0 and result.stdout or ''
    local major, minor, patch = out:match('^(%d+)%.(%d+)%.(%d+)')
    if major then
      local version = { tonumber(major), tonumber(minor), tonumber(patch) }
      local executable = vim.trim(out:match('\n([^\n]+)') or cmd[1])
      if new_enough(version) then
        return { executable = executable ~= '' and executable or cmd[1], version = table.concat(version, '.') }
      end
      found[#found + 1] = ('%s is %s'):format(cmd[1], table.concat(version, '.'))
    end
  end
  local what = #found > 0 and ('found only ' .. table.concat(found, ', '))
    or 'found none (no python3 or python on $PATH)'
  return nil,
    ('installing the fimble server needs Python %d.%d or newer, and fimble %s. Install it (python.org, or your '
      .. "system's package manager; on Debian/Ubuntu also its -venv package), or set "
      .. "setup({ install = { python = '/path/to/python3.12' } }), then run :FimbleInstall again."):format(
      M.MIN_PYTHON[1],
      M.MIN_PYTHON[2],
      what
    )
end

-- ---- Running the installer ------------------------------------------------------------------------------------

local function emit(data)
  pcall(api.nvim_exec_autocmds, 'User', { pattern = 'FimbleInstall', modeline = false, data = data })
  pcall(vim.cmd, 'redrawstatus')
end

local last_echo = 0
local function show(text, force)
  local now = util.uv.now()
  if not force and now - last_echo < 200 then
    return
  end
  last_echo = now
  local width = math.max(20, vim.o.columns - 12)
  if #text > width then
    text = text:sub(1, width - 3) .. '...'
  end
  api.nvim_echo({ { text, 'MoreMsg' } }, false, {})
end

local function on_event(event)
  local r = M.running
  if not r then
    return
  end
  if event.event == 'step' then
    r.step, r.title = event.step, event.title
    r.percent = event.percent or r.percent
    r.message = event.title
    show(('fimble: installing %d%% - %s'):format(r.percent, event.title), true)
    emit({ state = 'step', step = event.step, title = event.title, percent = r.percent })
  elseif event.event == 'progress' then
    r.percent = event.percent or r.percent
    local detail = event.fraction and ('%d%%'):format(math.floor(event.fraction * 100 + 0.5)) or event.message or ''
    r.message = ('%s - %s'):format(r.title or '', detail)
    show(('fimble: installing %d%% - %s'):format(r.percent, r.message))
    emit({ state = 'progress', step = event.step, message = r.message, percent = r.percent })
  elseif event.event == 'warning' then
    util.notify('fimble: ' .. event.message, vim.log.levels.WARN)
  end
end

local function finish(outcome, on_done)
  local r = M.running
  M.running = nil
  M.last = outcome
  if r and r.leave_autocmd then
    pcall(api.nvim_del_autocmd, r.leave_autocmd)
  end
  if outcome.kind == 'done' then
    local seconds = math.floor((util.uv.now() - r.started) / 1000 + 0.5)
    util.notify(
      ('fimble: the server is installed (fimble %s, %d s); starting it.'):format(outcome.version or '?', seconds),
      vim.log.levels.INFO
    )
    local server = require('fimble.server')
    server.status = { state = 'off', message = 'installed' }
    if require('fimble')._setup_done and config.options.enabled then
      server.restart()
    end
  elseif outcome.kind == 'cancelled' then
    util.notify('fimble: the install was cancelled; nothing of it was kept.', vim.log.levels.WARN)
  else
    -- The installer's own failures have a log; the ones found before it ran (no Python, no checkout) do not.
    local log = outcome.code and ('; the log is ' .. M.log_path()) or ''
    util.notify(('fimble: %s\n(:FimbleInstall tries again%s)'):format(outcome.message, log), vim.log.levels.ERROR)
  end
  emit({ state = outcome.kind, message = outcome.message })
  if on_done then
    on_done(outcome)
  end
end

--- Installs (or, with `update`, reinstalls) the server. Asynchronous; `on_done(outcome)` is called at the end.
---@param o? { source: string?, update: boolean?, on_done: fun(outcome: table)? }
---@return boolean started
function M.install(o)
  o = o or {}
  if M.running then
    util.notify('fimble: the server is being installed already (:FimbleInstallCancel stops it).', vim.log.levels.WARN)
    return false
  end
  local fail = function(message)
    finish({ kind = 'error', message = message }, o.on_done)
    return false
  end
  M.running = { percent = 0, message = 'looking for Python', root = M.root(), started = util.uv.now() }
  local source = o.source and o.source ~= '' and vim.fs.normalize(vim.fn.fnamemodify(o.source, ':p')) or M.source()
  if not source then
    return fail(
      'this plugin is not inside a fimble checkout, so there is nothing to install: run :FimbleInstall '
        .. '/path/to/fimble (a checkout or a fimble wheel), or set setup({ install = { source = ... } }).'
    )
  end
  if vim.fn.filereadable(M.script()) ~= 1 then
    return fail(('the installer %s is missing (the plugin folder should sit in a fimble checkout).'):format(M.script()))
  end
  local current = M.current()
  local version = vim.fn.isdirectory(source) == 1 and M.checkout_version(source) or nil
  if not o.update and current and version and current.version == version then
    M.running = nil
    util.notify(
      ('fimble: fimble %s is installed already (%s); :FimbleUpdate reinstalls it.'):format(current.version, current.python),
      vim.log.levels.INFO
    )
    if o.on_done then
      o.on_done({ kind = 'done', version = current.version, unchanged = true })
    end
    return false
  end
  local python, problem = M.find_python()
  if not python then
    return fail(problem)
  end
  local root = M.root()
  vim.fn.mkdir(root, 'p')
  show(('fimble: installing the server with Python %s into %s'):format(python.version, root), true)
  emit({ state = 'start', root = root })

  local outcome
  local pending = ''
  local function on_line(line)
    local ok, event = pcall(vim.json.decode, line, { luanil = { object = true, array = true } })
    if not ok or type(event) ~= 'table' then
      return
    end
    if event.event == 'done' then
      outcome = { kind = 'done', version = event.version, seconds = event.seconds }
    elseif event.event == 'error' then
      outcome = { kind = 'error', code = event.code, message = event.message }
    elseif event.event == 'cancelled' then
      outcome = { kind = 'cancelled', message = event.message }
    end
    vim.schedule(function()
      on_event(event)
    end)
  end
  local argv = { python.executable, '-I', M.script(), 'install', '--root', root, '--source', source }
  local ok, job = pcall(vim.system, argv, {
    cwd = root,
    text = true,
    stdout = function(_, data)
      if not data then
        return
      end
      pending = pending .. data
      while true do
        local nl = pending:find('\n', 1, true)
        if not nl then
          break
        end
        on_line(pending:sub(1, nl - 1))
        pending = pending:sub(nl + 1)
      end
    end,
  }, function(result)
    vim.schedule(function()
      if pending ~= '' then
        on_line(pending)
      end
      finish(
        outcome
          or {
            kind = 'error',
            message = ('the installer stopped (exit code %d): %s'):format(
              result.code,
              vim.trim(result.stderr or ''):sub(-300)
            ),
          },
        o.on_done
      )
    end)
  end)
  if not ok then
    return fail(('could not run %s: %s'):format(python.executable, tostring(job)))
  end
  M.running.job = job
  -- Quitting Neovim stops the install (the installer removes what it started).
  M.running.leave_autocmd = api.nvim_create_autocmd('VimLeavePre', { callback = M.cancel, once = true })
  return true
end

--- Stops the running install; the installer removes the unfinished venv and the old install stays in use.
function M.cancel()
  local r = M.running
  if not (r and r.job) then
    return false
  end
  if is_windows then
    -- No signal reaches a Windows process: end the installer and what it started (the next install cleans up).
    vim.system({ 'taskkill', '/T', '/F', '/PID', tostring(r.job.pid) })
  else
    r.job:kill(15)
  end
  return true
end

--- For lazy.nvim's `build` (or a script): installs or updates, waiting until it is done (inside lazy's coroutine it
--- yields progress messages to lazy's window). Raises an error when the install fails.
function M.build(o)
  o = type(o) == 'table' and o or {}
  local result
  M.install({
    source = o.source,
    update = true,
    on_done = function(outcome)
      result = outcome
    end,
  })
  local co = coroutine.running()
  while not result do
    vim.wait(200, function()
      return result ~= nil
    end)
    if not result and co and coroutine.isyieldable() then
      local r = M.running
      coroutine.yield(r and ('fimble: installing %d%% - %s'):format(r.percent, r.message or '') or nil)
    end
  end
  if result.kind ~= 'done' then
    error('fimble: ' .. (result.message or 'the install did not finish'), 0)
  end
  return result
end

--- A line for the statusline while an install runs, else nil.
function M.status()
  local r = M.running
  if not r then
    return nil
  end
  return ('fimble: installing %d%%'):format(math.floor(r.percent or 0))
end

return M
