"""Headless: experiments from the command line, distributed training."""
