"""How runs start: clients of the Prefect API that start, watch and answer promotions."""
