"""What every imagesearch service shares: errors, settings helpers, telemetry, server lifecycle."""
