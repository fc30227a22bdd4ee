-- The cli bench's trivial handler: each record back as it came.
return function(record) return record end
