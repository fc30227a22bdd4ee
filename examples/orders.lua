-- A task file for the luapool command: an order a line in, its item count
-- and total out. From the repo root, after `make`:
--
--   bin/luapool examples/orders.lua examples/orders.jsonl
--
-- The command decodes each line with lua-cjson in a worker, calls this
-- function on the value, and encodes what it returns as the output line.
return function(order)
  local count, total = 0, 0
  for _, item in ipairs(order.items) do
    count = count + item.qty
    total = total + item.qty * item.price
  end
  return { id = order.id, customer = order.customer, items = count, total = total }
end
