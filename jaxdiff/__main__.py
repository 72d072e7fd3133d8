from jaxdiff.cli import run

run()
