# Shortcuts for ./dev.sh (which needs no make).
.PHONY: run test lint setup services
run:
	./dev.sh run
test:
	./dev.sh test
lint:
	./dev.sh lint
setup:
	./dev.sh setup
services:
	scripts/services.sh
