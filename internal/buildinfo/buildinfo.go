package buildinfo

// Version is the binary's version. Releases set it with
// -ldflags "-X github.com/corralhq/corral/internal/buildinfo.Version=…".
var Version = "0.1.0-dev"
