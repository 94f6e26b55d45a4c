"""Views of running nodes, from outside the runtime: the Prometheus exporter
(`metrics`, the ``metrics`` extra), and the samples of a cluster's nodes and
processes that ``cloudy top`` shows (`sample`, `top_view`). The runtime knows
nothing of them; ``import cloudy`` loads none.
"""
