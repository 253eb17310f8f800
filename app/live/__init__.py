"""Live views' plumbing: log text to safe HTML, websocket rules and slots, tails, log fan-out."""
