-- `luarocks test` runs this with the Lua of the tree it builds for: busted
-- over spec/ (or over the arguments given after `luarocks test`).
if not arg or #arg == 0 then arg = { [0] = "busted", "spec" } end
require "busted.runner" ({ standalone = false })
