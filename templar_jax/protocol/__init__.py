"""What every peer of a run shares, below the neurons: the global model's deterministic outer
step and the objects the leader validator publishes (start window, peer lists, aggregates).
The neurons, the evaluation of a finished run and the demo all read these from here."""
