module github.com/companion/remediator

go 1.26
