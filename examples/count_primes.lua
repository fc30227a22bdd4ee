-- Task file: counts the primes in [from, to] by trial division.
return function(range)
  local count = 0
  for n = math.max(range.from, 2), range.to do
    local prime = true
    for d = 2, math.floor(math.sqrt(n)) do
      if n % d == 0 then prime = false break end
    end
    if prime then count = count + 1 end
  end
  return count
end
