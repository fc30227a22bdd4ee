-- Empty task: returns nothing.
return function() end
