-- fimble.nvim: offline Copilot-style inline completion from a local model (`fimble serve`).
--
--   require('fimble').setup({ settings = { model = '~/models/coder.gguf' } })
--
-- See README.md for the options, keymaps and commands.
local config = require('fimble.config')
local server = require('fimble.server')

local api = vim.api
local M = {}

M._setup_done = false
--- 'builtin' (vim.lsp.inline_completion, Neovim 0.12+) or 'extmarks' (own ghost text).
M.mode = nil
local mapped = {} ---@type string[]

local function backend()
  if M.mode == 'builtin' then
    return require('fimble.builtin')
  end
  return require('fimble.ghost')
end

local function choose_mode(opts)
  local builtin = require('fimble.builtin')
  if opts.ghost_text == 'builtin' then
    return 'builtin'
  elseif opts.ghost_text == 'extmarks' then
    return 'extmarks'
  end
  return builtin.available() and 'builtin' or 'extmarks'
end

local function set_highlights()
  api.nvim_set_hl(0, 'FimbleSuggestion', { link = 'Comment', default = true })
  api.nvim_set_hl(0, 'FimbleSuggestionIndex', { link = 'NonText', default = true })
  -- Deleted text: the colour scheme's DiffDelete, struck through (a link could not add the strikethrough).
  local delete = api.nvim_get_hl(0, { name = 'DiffDelete', link = false })
  delete.strikethrough = true
  delete.default = true
  api.nvim_set_hl(0, 'FimbleNextEditDelete', delete)
  api.nvim_set_hl(0, 'FimbleNextEditInsert', { link = 'DiffAdd', default = true })
  api.nvim_set_hl(0, 'FimbleNextEditHint', { link = 'Comment', default = true })
end

-- Public actions (usable from your own mappings). Each returns true when it did something.

--- Accepts the whole suggestion (and then asks for a next edit).
function M.accept()
  local done = backend().accept('all')
  if done then
    require('fimble.next_edit').after_accept()
  end
  return done
end

--- Accepts the next word of the suggestion.
function M.accept_word()
  return backend().accept('word')
end

--- Accepts the rest of the current line of the suggestion.
function M.accept_line()
  return backend().accept('line')
end

function M.next()
  return backend().cycle(1)
end

function M.prev()
  return backend().cycle(-1)
end

function M.dismiss()
  return backend().dismiss()
end

--- Asks for a suggestion now.
function M.suggest()
  return backend().suggest()
end

--- Whether a suggestion is shown in the current buffer.
function M.is_visible()
  return backend().is_visible(api.nvim_get_current_buf())
end

--- The text that accepting would insert at the cursor (extmark mode only), or nil.
function M.get_suggestion()
  if M.mode == 'builtin' then
    return nil
  end
  return require('fimble.ghost').get_suggestion()
end

local function feed(keys)
  api.nvim_feedkeys(vim.keycode(keys), 'ni', false)
end

-- Keymap actions: the function and, for keys that mean something on their own, the fallback key.
local actions = {
  accept = { fn = M.accept },
  accept_word = { fn = M.accept_word },
  accept_line = { fn = M.accept_line },
  next = { fn = M.next },
  prev = { fn = M.prev },
  dismiss = { fn = M.dismiss, fallback = true },
  suggest = { fn = M.suggest },
}

local descriptions = {
  accept = 'fimble: accept the suggestion',
  accept_word = 'fimble: accept the next word of the suggestion',
  accept_line = 'fimble: accept the next line of the suggestion',
  next = 'fimble: next suggestion',
  prev = 'fimble: previous suggestion',
  dismiss = 'fimble: dismiss the suggestion',
  suggest = 'fimble: ask for a suggestion',
}

local function set_keymaps(opts)
  for _, lhs in ipairs(mapped) do
    pcall(vim.keymap.del, 'i', lhs)
  end
  mapped = {}
  for name, lhs in pairs(opts.keymaps or {}) do
    local action = actions[name]
    if action and type(lhs) == 'string' and lhs ~= '' then
      vim.keymap.set('i', lhs, function()
        local done = action.fn()
        if not done and action.fallback then
          feed(lhs)
        end
      end, { desc = descriptions[name], silent = true })
      mapped[#mapped + 1] = lhs
    end
  end
  if opts.accept_tab then
    vim.keymap.set('i', '<Tab>', function()
      if not M.accept() then
        feed('<Tab>')
      end
    end, { desc = 'fimble: accept the suggestion, or insert a <Tab>', silent = true })
    mapped[#mapped + 1] = '<Tab>'
  end
end

local function on_attach(bufnr, client)
  if M.mode == 'builtin' then
    require('fimble.builtin').attach(bufnr)
  elseif vim.startswith(api.nvim_get_mode().mode, 'i') and api.nvim_get_current_buf() == bufnr then
    -- Already typing when the server came up: ask right away.
    require('fimble.ghost').schedule(bufnr)
  end
  vim.b[bufnr].fimble_client_id = client.id
end
M._on_attach = on_attach

--- Sets fimble up. Calling it again applies new options (settings are pushed to the running server).
---@param opts? table see README.md
function M.setup(opts)
  local previous = M._setup_done and vim.deepcopy(config.options) or nil
  opts = config.set(opts)
  M._setup_done = true
  M.mode = choose_mode(opts)
  set_highlights()

  -- Handlers shared by every client we start.
  server.extra_handlers['fimble/explanation'] = function(...)
    return require('fimble.explain').on_notification(...)
  end
  vim.lsp.commands['fimble.explain'] = function(command, ctx)
    return require('fimble.explain').command_handler(command, ctx)
  end

  local group = api.nvim_create_augroup('fimble', { clear = true })
  api.nvim_create_autocmd('FileType', {
    group = group,
    callback = function(args)
      -- Scheduled: let other FileType handlers finish (and `buftype` settle) first.
      vim.schedule(function()
        if api.nvim_buf_is_valid(args.buf) then
          server.start(args.buf)
        end
      end)
    end,
  })
  api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(args)
      local client = args.data and vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == server.NAME then
        on_attach(args.buf, client)
      end
    end,
  })
  api.nvim_create_autocmd('ColorScheme', { group = group, callback = set_highlights })
  api.nvim_create_autocmd('VimLeavePre', {
    group = group,
    callback = function()
      server.stopping = true
    end,
  })

  if M.mode == 'extmarks' then
    require('fimble.ghost').setup()
  else
    require('fimble.ghost').teardown()
  end
  require('fimble.next_edit').setup()
  set_keymaps(opts)

  if not opts.cmd then
    -- The plugin was updated (git pull, lazy.nvim) but its server was not: say so once.
    local install = require('fimble.install')
    local current, source = install.current(), install.source()
    local version = source and install.checkout_version(source)
    if current and version and current.version ~= version and not M._told_update then
      M._told_update = true
      vim.schedule(function()
        vim.notify(
          ('fimble: the plugin is at %s, its installed server at %s: :FimbleUpdate reinstalls it.'):format(
            version,
            current.version
          ),
          vim.log.levels.WARN,
          { title = 'fimble' }
        )
      end)
    end
  end

  if previous then
    if
      not vim.deep_equal(previous.cmd, opts.cmd)
      or not vim.deep_equal(previous.cmd_env, opts.cmd_env)
      or not vim.deep_equal(previous.server_args, opts.server_args)
    then
      server.restart()
      return M
    end
    if not vim.deep_equal(previous.settings, opts.settings) then
      server.update_settings()
    end
  end
  if opts.enabled then
    vim.schedule(server.start_all)
  end
  return M
end

--- A short string for the statusline, e.g. "fimble: ready 120ms".
function M.status()
  if not M._setup_done then
    return ''
  end
  local installing = require('fimble.install').status()
  if installing then
    return installing
  end
  if not config.options.enabled then
    return 'fimble: off'
  end
  if server.status.state == 'not installed' and #server.clients() == 0 then
    return 'fimble: not installed'
  end
  local r = server.retry
  if r.gave_up then
    return 'fimble: failed'
  elseif r.timer then
    return 'fimble: retrying'
  end
  if #server.clients() == 0 then
    return server.status.state == 'error' and 'fimble: error' or 'fimble: off'
  end
  local st = server.status
  local state = st.state or 'starting'
  if state == 'ready' then
    if M.mode ~= 'builtin' and require('fimble.ghost').pending() then
      return 'fimble: ...'
    end
    if st.latencyMs then
      return ('fimble: ready %dms'):format(math.floor(st.latencyMs + 0.5))
    end
    return 'fimble: ready'
  elseif state == 'generating' then
    return 'fimble: ...'
  end
  return 'fimble: ' .. state
end

--- Lines printed by :FimbleStatus.
function M.status_lines()
  local st = server.status
  local lines = {}
  local function add(k, v)
    if v ~= nil and v ~= '' then
      lines[#lines + 1] = ('%-12s %s'):format(k .. ':', tostring(v))
    end
  end
  add('state', st.state)
  add('message', st.message)
  add('model', st.model)
  if st.latencyMs then
    add('latency', ('%d ms'):format(math.floor(st.latencyMs + 0.5)))
  end
  if st.tokensPerSecond then
    add('speed', ('%.1f tokens/s'):format(st.tokensPerSecond))
  end
  if st.time then
    add('updated', os.date('%H:%M:%S', st.time))
  end
  local clients = server.clients()
  if #clients == 0 then
    add('client', 'not running')
  end
  for _, client in ipairs(clients) do
    local bufs = vim.tbl_keys(client.attached_buffers or {})
    table.sort(bufs)
    add(
      'client',
      ('id %d, %s, buffers %s'):format(
        client.id,
        client.initialized and 'initialized' or 'starting',
        table.concat(bufs, ',')
      )
    )
  end
  local r = server.retry
  if r.attempts > 0 then
    add('retries', ('%d (%s)%s'):format(
      r.attempts,
      r.last_error or '?',
      r.gave_up and ', gave up' or (r.next_delay_ms and (', next in %gs'):format(r.next_delay_ms / 1000) or '')
    ))
  end
  local cmd, source = server.command()
  add('command', cmd and ('%s (%s)'):format(table.concat(cmd, ' '), source) or 'none (:FimbleInstall installs the server)')
  local installing = require('fimble.install').running
  if installing then
    add('install', ('%d%% %s'):format(installing.percent or 0, installing.message or ''))
  end
  add('ghost text', M.mode == 'builtin' and 'vim.lsp.inline_completion (built-in)' or 'extmarks')
  local next_edit = require('fimble.next_edit')
  local last = next_edit.last_result
  add(
    'next edit',
    (next_edit.enabled() and 'on' or 'off')
      .. (last and last.count == 0 and last.reason and (' (last: none, %s)'):format(last.reason) or '')
  )
  add('enabled', tostring(config.options.enabled) .. (vim.b.fimble_disabled and ' (disabled in this buffer)' or ''))
  return lines
end

function M.print_status()
  local lines = M.status_lines()
  api.nvim_echo({ { 'fimble\n', 'Title' }, { table.concat(lines, '\n') } }, false, {})
end

function M.enable()
  config.options.enabled = true
  server.reset_retry()
  server.start_all()
end

function M.disable()
  config.options.enabled = false
  if M.mode == 'extmarks' then
    require('fimble.ghost').teardown()
    require('fimble.ghost').setup()
  end
  require('fimble.next_edit').teardown()
  require('fimble.next_edit').setup()
  server.stop()
end

function M.restart()
  server.restart()
end

--- :FimbleNextEdit [apply|jump|dismiss]: ask for a next edit now, or act on the one shown.
function M.next_edit(action)
  return require('fimble.next_edit').command(action)
end

--- :[range]FimbleExplain
function M.explain(line1, line2)
  return require('fimble.explain').explain(line1, line2)
end

return M
