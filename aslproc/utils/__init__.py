"""Pure functions (array and file layers) that the interfaces call."""
