"""Helpers of bench/diy_compare.py: the DIY workload, the Redis + Postgres/pgvector + worker
stack it is compared with, db0's side of each measure, and the meters both sides share."""
