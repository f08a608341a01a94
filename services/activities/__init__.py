"""Activities: green actions — commutes, station scans, charging sessions — and their review."""
