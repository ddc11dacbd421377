module gpu-ami-bakery/tests/standin-ui

go 1.21
