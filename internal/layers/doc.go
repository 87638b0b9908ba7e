// Package layers holds the tree-wide checks that no single package can
// make about itself: that every import between corral packages points down
// the layer diagram of DESIGN.md ("data flows downward; nothing imports
// upward"), and that every Go file in the module is gofmt-clean.
//
// The rank table in rank.go is the diagram in code. A new package must be
// added to it, or the test fails and says so; that is the moment to decide
// where the package sits. The checks run as ordinary tests (go test
// ./internal/layers), so CI needs nothing extra.
package layers
