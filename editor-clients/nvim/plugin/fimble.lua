-- Commands of fimble.nvim. Nothing starts until require('fimble').setup() is called.
if vim.g.loaded_fimble then
  return
end
vim.g.loaded_fimble = true

if vim.fn.has('nvim-0.10') ~= 1 then
  vim.api.nvim_echo({ { 'fimble.nvim needs Neovim 0.10 or newer', 'ErrorMsg' } }, true, {})
  return
end

local function fimble()
  return require('fimble')
end

vim.api.nvim_create_user_command('FimbleExplain', function(args)
  if args.range == 0 then
    fimble().explain() -- the enclosing statement or definition at the cursor
  else
    fimble().explain(args.line1, args.line2)
  end
end, { range = true, desc = 'fimble: explain the selected lines, or the code at the cursor (floating window)' })

vim.api.nvim_create_user_command('FimbleNextEdit', function(args)
  fimble().next_edit(args.args)
end, {
  nargs = '?',
  complete = function()
    return { 'apply', 'jump', 'dismiss' }
  end,
  desc = 'fimble: suggest the next edit near the cursor now (apply, jump, dismiss: act on the one shown)',
})

vim.api.nvim_create_user_command('FimbleStatus', function()
  fimble().print_status()
end, { desc = 'fimble: show the server state, model and latency' })

vim.api.nvim_create_user_command('FimbleRestart', function()
  fimble().restart()
end, { desc = 'fimble: restart the language server' })

vim.api.nvim_create_user_command('FimbleEnable', function()
  fimble().enable()
end, { desc = 'fimble: start suggesting' })

vim.api.nvim_create_user_command('FimbleDisable', function()
  fimble().disable()
end, { desc = 'fimble: stop the server and suggestions' })

vim.api.nvim_create_user_command('FimbleInstall', function(args)
  require('fimble.install').install({ source = args.args })
end, {
  nargs = '?',
  complete = 'file',
  desc = 'fimble: install the server into its own venv (from this plugin\'s fimble checkout, or the given path)',
})

vim.api.nvim_create_user_command('FimbleUpdate', function(args)
  require('fimble.install').install({ source = args.args, update = true })
end, {
  nargs = '?',
  complete = 'file',
  desc = 'fimble: reinstall the server (the old one serves until the new one works)',
})

vim.api.nvim_create_user_command('FimbleInstallCancel', function()
  if not require('fimble.install').cancel() then
    vim.notify('fimble: no install is running', vim.log.levels.INFO, { title = 'fimble' })
  end
end, { desc = 'fimble: stop the running install (nothing of it is kept)' })
