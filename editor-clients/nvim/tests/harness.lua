-- The few lines every *_spec.lua shares: load the plugin from this checkout, run named checks, compare values,
-- and end Neovim with status 1 when a check failed. A spec starts with
--   local t = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h') .. '/harness.lua')
local M = { failures = 0 }

M.plugin_dir = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h')
vim.opt.runtimepath:prepend(M.plugin_dir)
vim.cmd('runtime plugin/fimble.lua')

function M.check(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    io.stdout:write('ok   ' .. name .. '\n')
  else
    M.failures = M.failures + 1
    io.stdout:write('FAIL ' .. name .. '\n' .. tostring(err) .. '\n')
  end
end

function M.eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(('%s: expected %s, got %s'):format(what or 'value', vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

function M.finish()
  io.stdout:write(('%d failure(s)\n'):format(M.failures))
  io.stdout:flush()
  vim.cmd(M.failures == 0 and 'qall!' or 'cquit! 1')
end

return M
