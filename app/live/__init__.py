"""Live views' plumbing: log text to safe HTML, websocket rules and slots, tails, runtime-log fan-out."""
