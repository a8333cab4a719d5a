"""Qt presentation layer: shows core state and forwards user actions to the core."""
