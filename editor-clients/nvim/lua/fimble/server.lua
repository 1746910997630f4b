-- Starting, restarting and watching the `fimble serve` language server.
local config = require('fimble.config')
local util = require('fimble.util')

local api = vim.api
local M = {}

M.NAME = 'fimble'

--- The last `fimble/status` notification, plus what we remember across notifications.
---@type { state: string, message: string, model?: string, latencyMs?: number, tokensPerSecond?: number, time?: number }
M.status = { state = 'off', message = 'not started' }

--- Retry bookkeeping: one notification per failure series, exponential backoff, a cap on attempts.
M.retry = { attempts = 0, timer = nil, gave_up = false, notified = false, last_error = nil, next_delay_ms = nil }

--- True while we stop the server on purpose (restart, disable, quitting Neovim).
M.stopping = false

---@type table<string, fun(err: any, result: any, ctx: table)>
M.extra_handlers = {}

local function emit(pattern, data)
  vim.schedule(function()
    pcall(api.nvim_exec_autocmds, 'User', { pattern = pattern, modeline = false, data = data })
    pcall(vim.cmd, 'redrawstatus')
  end)
end

---@return vim.lsp.Client[]
function M.clients(bufnr)
  local clients = vim.lsp.get_clients({ name = M.NAME, bufnr = bufnr })
  local live = {}
  for _, client in ipairs(clients) do
    if not util.is_stopped(client) then
      live[#live + 1] = client
    end
  end
  return live
end

--- The initialized fimble client attached to `bufnr` (or any, when bufnr is nil).
---@return vim.lsp.Client?
function M.get_client(bufnr)
  for _, client in ipairs(M.clients(bufnr)) do
    if client.initialized then
      return client
    end
  end
  return nil
end

--- Whether fimble should attach to `bufnr`.
function M.wants(bufnr)
  local opts = config.options
  if not opts.enabled or not api.nvim_buf_is_valid(bufnr) or not api.nvim_buf_is_loaded(bufnr) then
    return false
  end
  if vim.bo[bufnr].buftype ~= '' or vim.b[bufnr].fimble_disabled then
    return false
  end
  local ft = vim.bo[bufnr].filetype
  if ft == '' then
    return false
  end
  if opts.filetypes then
    return vim.tbl_contains(opts.filetypes, ft)
  end
  return not vim.tbl_contains(opts.exclude_filetypes or {}, ft)
end

local function set_client_state(state, message)
  M.status = vim.tbl_extend('force', M.status, { state = state, message = message or '', time = os.time() })
  emit('FimbleStatus', M.status)
end

function M.reset_retry()
  local r = M.retry
  if r.timer then
    r.timer:stop()
    r.timer:close()
  end
  M.retry = { attempts = 0, timer = nil, gave_up = false, notified = false, last_error = nil, next_delay_ms = nil }
end

--- Called when the server could not be started or exited with an error.
function M.on_failure(reason)
  local r = M.retry
  local opts = config.options.retry or {}
  local max_retries = opts.max_retries or 5
  r.attempts = r.attempts + 1
  r.last_error = reason
  local base = opts.base_delay_ms or 1000
  local cap = opts.max_delay_ms or 30000
  if not r.notified then
    r.notified = true
    local delays = {}
    for i = 1, math.min(max_retries, 3) do
      delays[#delays + 1] = ('%gs'):format(math.min(base * 2 ^ (i - 1), cap) / 1000)
    end
    util.notify(
      ('fimble: the language server %s.\nRetrying up to %d times (after %s%s); '
        .. ':FimbleStatus shows the state, :checkhealth fimble helps find the cause, the log is %s'):format(
        reason,
        max_retries,
        table.concat(delays, ', '),
        max_retries > 3 and ', ...' or '',
        util.lsp_log_path()
      ),
      vim.log.levels.ERROR
    )
  end
  if r.attempts > max_retries then
    r.gave_up = true
    r.next_delay_ms = nil
    set_client_state('error', ('server %s; gave up after %d attempts (:FimbleRestart tries again)'):format(reason, r.attempts))
    return
  end
  local delay = math.min(base * 2 ^ (r.attempts - 1), cap)
  r.next_delay_ms = delay
  set_client_state('error', ('server %s; retry %d/%d in %gs'):format(reason, r.attempts, max_retries, delay / 1000))
  if r.timer then
    r.timer:stop()
    r.timer:close()
  end
  local timer = assert(util.uv.new_timer())
  r.timer = timer
  timer:start(delay, 0, function()
    timer:stop()
    timer:close()
    vim.schedule(function()
      if M.retry.timer == timer then
        M.retry.timer = nil
        M.start_all()
      end
    end)
  end)
end

--- The process of a client we started has exited (called outside the main loop).
local function on_process_exit(code, signal, info)
  vim.schedule(function()
    if M.stopping or info.stopping then
      return
    end
    if code == 0 and (signal == 0 or signal == 15) then
      -- A clean exit that we did not ask for: treat it like a crash, unless it ran a long time.
      if not info.initialized then
        M.on_failure('exited before it finished starting')
      else
        set_client_state('off', 'server exited')
      end
      return
    end
    local reason = signal ~= 0 and ('was killed by signal %d'):format(signal)
      or ('exited with code %d'):format(code)
    if not info.initialized then
      reason = reason .. ' while starting'
    elseif os.time() - info.started > 60 then
      -- It ran fine for a while: a fresh failure series.
      M.reset_retry()
    end
    M.on_failure(reason)
  end)
end

local function client_capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.textDocument = caps.textDocument or {}
  caps.textDocument.inlineCompletion = caps.textDocument.inlineCompletion or { dynamicRegistration = false }
  caps.window = caps.window or {}
  caps.window.workDoneProgress = true
  -- PROTOCOL.md speaks UTF-16 positions (like VS Code); offer only that, so every client of fimble
  -- uses the same encoding. (The plugin itself follows client.offset_encoding, whatever it is.)
  caps.general = caps.general or {}
  caps.general.positionEncodings = { 'utf-16' }
  return caps
end

function M.on_status(_, result, _)
  if type(result) ~= 'table' then
    return
  end
  local previous = M.status
  local status = vim.tbl_extend('force', {}, result)
  status.time = os.time()
  -- Keep what a later notification does not repeat (model, last latency).
  status.model = status.model or previous.model
  status.latencyMs = status.latencyMs or previous.latencyMs
  status.tokensPerSecond = status.tokensPerSecond or previous.tokensPerSecond
  M.status = status
  if result.state == 'ready' then
    if M.retry.attempts > 0 or M.retry.notified then
      M.reset_retry()
    end
    if M.command_source == 'installed' then
      require('fimble.install').remove_previous()
    end
  elseif result.state == 'error' and config.options.notify_errors and result.message then
    if M._last_error_message ~= result.message then
      M._last_error_message = result.message
      util.notify('fimble: ' .. result.message, vim.log.levels.WARN)
    end
  end
  emit('FimbleStatus', status)
end

--- The plugin's own folder (three levels above this file): where fimble's processes run.
local plugin_dir = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h:h')

--- The working directory of every process fimble starts (the server, `:checkhealth`'s `--version`): never the
--- project. `python -m fimble` puts its working directory first on sys.path, so a project that ships a `fimble/`
--- package (or a `json.py`) would run its own code; a bare command name is also looked up there on Windows, and
--- in a relative $PATH entry everywhere. The plugin's folder holds no Python and no programs.
function M.process_cwd()
  return plugin_dir
end

--- `cmd` as it is spawned: a relative program path ('./venv/bin/fimble') made absolute against Neovim's
--- working directory, where `executable()` found it; a bare name stays a $PATH lookup.
---@param cmd string[]
---@return string[]
function M.spawn_cmd(cmd)
  local out = vim.deepcopy(cmd)
  local exe = out[1]
  local has_dir = exe:find('/', 1, true) or (vim.fn.has('win32') == 1 and exe:find('\\', 1, true))
  if has_dir then
    out[1] = vim.fn.fnamemodify(exe, ':p')
  end
  return out
end

--- The command that starts the server and where it comes from: setup()'s `cmd`, else the server :FimbleInstall
--- installed, else `fimble serve` on $PATH; nil when there is none.
---@return string[]?, string?
function M.command()
  local opts = config.options
  if opts.cmd then
    return opts.cmd, 'cmd'
  end
  local args = vim.deepcopy(opts.server_args or {})
  local installed = require('fimble.install').command(args)
  if installed then
    return installed, 'installed'
  end
  if vim.fn.executable('fimble') == 1 then
    return vim.list_extend({ 'fimble', 'serve' }, args), 'PATH'
  end
  return nil, nil
end

--- No server configured, installed or on $PATH: say so once, with the way to install it (nothing is retried).
function M.on_not_installed()
  if require('fimble.install').running then
    return
  end
  set_client_state('not installed', 'the server is not installed: :FimbleInstall installs it')
  if not M._told_not_installed then
    M._told_not_installed = true
    util.notify(
      'fimble: the server is not installed. Run :FimbleInstall to install it into its own Python environment '
        .. '(it needs Python 3.11+ and about 700 MB; :checkhealth fimble says more).',
      vim.log.levels.WARN
    )
  end
end

local function make_config(bufnr, cmd)
  local opts = config.options
  local root = vim.fs.root(bufnr, opts.root_markers or { '.git' }) or vim.fn.getcwd()
  local settings = vim.deepcopy(opts.settings or {})
  local info = { started = os.time(), initialized = false, stopping = false }
  local real_cmd = M.spawn_cmd(cmd)

  local handlers = {
    ['fimble/status'] = M.on_status,
  }
  for method, handler in pairs(M.extra_handlers) do
    handlers[method] = handler
  end

  return {
    name = M.NAME,
    -- A function instead of a list so that we see the real exit code: Neovim's own "Client quit
    -- with exit code" warning would otherwise repeat on every retry; we report failures once.
    cmd = function(dispatchers)
      local wrapped = vim.tbl_extend('force', {}, dispatchers, {
        on_exit = function(code, signal)
          on_process_exit(code, signal, info)
          dispatchers.on_exit(0, 0)
        end,
      })
      return vim.lsp.rpc.start(real_cmd, wrapped, { cwd = M.process_cwd(), env = opts.cmd_env })
    end,
    root_dir = root,
    init_options = settings,
    settings = { fimble = settings },
    capabilities = client_capabilities(),
    handlers = handlers,
    on_init = function(client)
      info.initialized = true
      info.client_id = client.id
      if M.status.state == 'off' or M.status.state == 'starting' or M.status.state == 'error' then
        set_client_state('starting', 'initialized, waiting for the model')
      end
    end,
    _fimble_info = info,
  }
end

local function reuse_client(client, _)
  return client.name == M.NAME and not util.is_stopped(client)
end

--- Starts the server (or reuses the running one) for `bufnr`.
function M.start(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  if not M.wants(bufnr) then
    return nil
  end
  local r = M.retry
  if r.gave_up or r.timer then
    return nil -- a retry is scheduled, or we gave up (:FimbleRestart resets)
  end
  local existing = M.clients()[1]
  if existing then
    if not vim.lsp.buf_is_attached(bufnr, existing.id) then
      vim.lsp.buf_attach_client(bufnr, existing.id)
    end
    return existing.id
  end
  local cmd, source = M.command()
  if not cmd then
    M.on_not_installed()
    return nil
  end
  local exe = cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    M.on_failure(('command %q was not found or is not executable'):format(exe))
    return nil
  end
  M.command_source = source
  local cfg = make_config(bufnr, cmd)
  local info = cfg._fimble_info
  cfg._fimble_info = nil
  if M.status.state == 'off' or M.status.state == 'error' or M.status.state == 'not installed' then
    set_client_state('starting', 'starting ' .. table.concat(cmd, ' '))
  end
  local ok, id = pcall(vim.lsp.start, cfg, { bufnr = bufnr, reuse_client = reuse_client })
  if not ok or not id then
    info.stopping = true
    M.on_failure(('could not be started (%s)'):format(ok and 'vim.lsp.start failed' or tostring(id)))
    return nil
  end
  return id
end

--- Starts the server for every loaded buffer that wants it.
function M.start_all()
  for _, bufnr in ipairs(api.nvim_list_bufs()) do
    if M.wants(bufnr) then
      M.start(bufnr)
    end
  end
end

--- Stops all fimble clients; calls `on_done` once they are gone (or after a timeout).
function M.stop(on_done)
  M.stopping = true
  local clients = M.clients()
  for _, client in ipairs(clients) do
    if util.has_011() then
      client:stop()
    else
      client.stop()
    end
  end
  local waited = 0
  local timer = assert(util.uv.new_timer())
  timer:start(0, 50, function()
    waited = waited + 50
    vim.schedule(function()
      if timer:is_closing() then
        return
      end
      local alive = #vim.lsp.get_clients({ name = M.NAME }) > 0
      if alive and waited > 3000 then
        for _, client in ipairs(vim.lsp.get_clients({ name = M.NAME })) do
          if util.has_011() then
            client:stop(true)
          else
            client.stop(true)
          end
        end
      end
      if not alive or waited > 5000 then
        timer:stop()
        timer:close()
        M.stopping = false
        set_client_state('off', 'stopped')
        if on_done then
          on_done()
        end
      end
    end)
  end)
end

function M.restart()
  M.reset_retry()
  M.stop(function()
    M.start_all()
  end)
end

--- Pushes changed settings to the running server (workspace/didChangeConfiguration).
function M.update_settings()
  local settings = vim.deepcopy(config.options.settings or {})
  for _, client in ipairs(M.clients()) do
    client.settings = { fimble = settings }
    if client.config then
      client.config.settings = { fimble = settings }
    end
    local params = { settings = { fimble = settings } }
    if util.has_011() then
      client:notify('workspace/didChangeConfiguration', params)
    else
      client.notify('workspace/didChangeConfiguration', params)
    end
  end
end

return M
