"""The chaos harness (`homeo chaos run`): a homeo of its own, a steady workload
and one injected fault, measured with the autonomic loop off and on."""
