// Hearth page script.
