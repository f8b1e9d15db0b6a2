"""IR optimisation passes: each a function from ir.Function to ir.Function (in place)."""
