"""Neural-network layers shared by the model families."""
