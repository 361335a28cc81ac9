module github.com/fedrisk/fedrisk/deploy

go 1.26.8
