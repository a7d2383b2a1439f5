"""`python -m fleetcast_trainer ...`"""
from .cli import main

main()
