-- Options of fimble.nvim and their defaults. See README.md for the documentation of each key.
local M = {}

---@class fimble.Keymaps
---@field accept string|false
---@field accept_word string|false
---@field accept_line string|false
---@field next string|false
---@field prev string|false
---@field dismiss string|false
---@field suggest string|false

---@class fimble.Options
M.defaults = {
  -- Whether fimble starts at all (`:FimbleEnable` / `:FimbleDisable` toggle it at run time).
  enabled = true,
  -- The server command. The first element must be an executable (a name on $PATH or a path).
  -- nil: the server :FimbleInstall installed, else `fimble serve` from $PATH.
  cmd = nil,
  -- Extra arguments after `fimble serve` when `cmd` is nil (e.g. { '--log-file', '/tmp/fimble.log' }).
  server_args = {},
  -- :FimbleInstall / :FimbleUpdate. python: the Python (3.11+) that creates the server's venv (nil: python3, then
  -- python, on $PATH; `py -3` on Windows); root: where the venvs and the install log go (nil:
  -- stdpath('data')/fimble); source: what pip installs (nil: this plugin's own fimble checkout).
  install = { python = nil, root = nil, source = nil },
  -- Extra environment for the server process (e.g. { FIMBLE_MODEL = '/path/model.gguf' }).
  cmd_env = nil,
  -- The `fimble` settings section, sent as initializationOptions and served for
  -- workspace/configuration. Keys are camelCase, as in editor-clients/PROTOCOL.md.
  settings = {},
  -- Filetypes fimble attaches to. nil = every filetype except `exclude_filetypes`;
  -- a list = only those.
  filetypes = nil,
  exclude_filetypes = {
    'help', 'gitcommit', 'gitrebase', 'hgcommit', 'svn', 'cvs', 'qf', 'netrw',
    'TelescopePrompt', 'lazy', 'mason', 'checkhealth',
  },
  -- Root markers used to pick the workspace folder (falls back to the current directory).
  root_markers = { '.git', '.hg', 'pyproject.toml', 'package.json', 'Cargo.toml', 'go.mod' },
  -- Delay between the last keystroke and the inline completion request (Neovim < 0.12).
  debounce_ms = 150,
  -- Request a suggestion automatically while typing; false = only on the `suggest` key.
  auto_trigger = true,
  -- "auto": vim.lsp.inline_completion on Neovim 0.12+, own extmark ghost text on 0.10/0.11.
  -- "builtin" / "extmarks" force one of them.
  ghost_text = 'auto',
  -- Insert-mode keymaps; set one to false to leave the key alone. None of them is <Tab>:
  -- set `accept_tab = true` to also accept with <Tab> (falls back to a literal <Tab>).
  keymaps = {
    accept = '<M-l>',
    accept_word = '<M-Right>',
    accept_line = '<M-C-Right>',
    next = '<M-]>',
    prev = '<M-[>',
    dismiss = '<C-]>',
    suggest = '<M-\\>',
  },
  accept_tab = false,
  -- Next-edit suggestions (the edit you are likely to make next, a few lines away), drawn as an inline diff.
  -- `next_edit = false` turns them off (as does the server setting `nextEdit = false`). The keys exist only
  -- while a next edit shows (buffer-local, insert and normal mode); jump and apply may share a key: it jumps when
  -- the cursor is not on the edit's lines, and applies when it is. A key set to false is not mapped.
  next_edit = {
    enabled = true,
    -- Pause after the last edit before asking (ghost text, when it shows or is on its way, goes first).
    debounce_ms = 300,
    keymaps = { jump = '<Tab>', apply = '<Tab>', dismiss = '<Esc>' },
  },
  -- Highlight group of the ghost text (default: linked to Comment).
  hl_group = 'FimbleSuggestion',
  -- Restart policy when the server is missing or exits with an error:
  -- retry after 1s, 2s, 4s, ... (capped at max_delay_ms), at most max_retries times.
  retry = { max_retries = 5, base_delay_ms = 1000, max_delay_ms = 30000 },
  -- The :FimbleExplain floating window.
  explain = { max_width = 80, max_height = 30, border = 'rounded', enter = true },
  -- Show fimble/status "error" messages with vim.notify (each distinct message once).
  notify_errors = true,
}

---@type fimble.Options
M.options = vim.deepcopy(M.defaults)

---@param user table?
---@return fimble.Options
function M.set(user)
  user = user or {}
  local opts = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), user)
  -- Lists replace the defaults instead of being merged index by index.
  for _, key in ipairs({ 'cmd', 'filetypes', 'exclude_filetypes', 'root_markers', 'server_args' }) do
    if user[key] ~= nil then
      opts[key] = vim.deepcopy(user[key])
    end
  end
  if user.settings ~= nil then
    opts.settings = vim.deepcopy(user.settings)
  end
  if type(opts.settings.model) == 'string' and opts.settings.model ~= '' then
    opts.settings.model = vim.fs.normalize(opts.settings.model) -- expands ~ and $VARS
  end
  if type(opts.cmd) == 'string' then
    opts.cmd = { opts.cmd }
  end
  if user.keymaps == false then
    opts.keymaps = {}
  end
  if type(user.next_edit) == 'boolean' then
    opts.next_edit = vim.tbl_extend('force', vim.deepcopy(M.defaults.next_edit), { enabled = user.next_edit })
  end
  for key, kind in pairs({
    settings = 'table',
    debounce_ms = 'number',
    keymaps = 'table',
    server_args = 'table',
    next_edit = 'table',
  }) do
    if type(opts[key]) ~= kind then
      error(('fimble.setup: option %q must be a %s, got %s'):format(key, kind, type(opts[key])), 3)
    end
  end
  if opts.cmd ~= nil and (type(opts.cmd) ~= 'table' or #opts.cmd == 0) then
    error('fimble.setup: option "cmd" must be a non-empty list (or nil for the installed server)', 3)
  end
  M.options = opts
  return opts
end

return M
