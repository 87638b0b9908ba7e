package datadir

import (
	"os"
	"path/filepath"
)

const (
	// Default is the data directory of an agent installed system-wide.
	Default = "/var/lib/corral"
	// EnvVar names the environment variable that overrides Default.
	EnvVar = "CORRAL_DATA_DIR"
)

// Names of the files in a data directory.
const (
	AdminSocketName  = "admin.sock"  // admin protocol, mode 0600
	ClientSocketName = "client.sock" // client protocol, mode 0660
	NodeIDName       = "node-id"     // the node id in decimal, made up on first start
	ClusterKeyName   = "cluster.key" // the cluster key unless configured elsewhere
	// TxEpochName holds the mesh's transaction epoch of the last start, in
	// decimal (1..8388607); each start writes the next one before it links
	// (mesh.Config.TxEpoch: transaction msg ids are never reused).
	TxEpochName = "tx-epoch"
	// RouteSeqnoName holds this node's routing seqno, in decimal
	// (0..65535); each start writes the next one before it links, and
	// every raise is written (agent/ROUTESEQNO.md).
	RouteSeqnoName = "route-seqno"
)

// Dir returns $CORRAL_DATA_DIR, or Default when it is unset or empty.
func Dir() string {
	if d := os.Getenv(EnvVar); d != "" {
		return d
	}
	return Default
}

// AdminSocket is the path of the admin socket in dir.
func AdminSocket(dir string) string { return filepath.Join(dir, AdminSocketName) }

// ClientSocket is the path of the client socket in dir.
func ClientSocket(dir string) string { return filepath.Join(dir, ClientSocketName) }

// NodeIDFile is the path of the node-id file in dir.
func NodeIDFile(dir string) string { return filepath.Join(dir, NodeIDName) }

// ClusterKeyFile is the default path of the cluster key in dir.
func ClusterKeyFile(dir string) string { return filepath.Join(dir, ClusterKeyName) }

// TxEpochFile is the path of the transaction epoch file in dir.
func TxEpochFile(dir string) string { return filepath.Join(dir, TxEpochName) }

// RouteSeqnoFile is the path of the routing seqno file in dir.
func RouteSeqnoFile(dir string) string { return filepath.Join(dir, RouteSeqnoName) }
