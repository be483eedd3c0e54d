"""The benchmark (private): ``run`` plans the scenarios, starts the workers and prints the tables;
``worker`` is one role of one client library, run as a script in a process of its own. Used by
benches/run.py in the repository and by ``python -m umqtt bench`` (umqtt.cli)."""
