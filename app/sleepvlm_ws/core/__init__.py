"""Qt-free core of the workstation. Nothing in this package may import Qt."""
