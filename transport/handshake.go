package transport

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/corralhq/corral/proto"
)

// Specification constants: the hello proof (proto/SPEC.md, "HELLO").
const (
	exporterLabel = "EXPORTER-corral-hello-v1"
	macLabel      = "corral hello v1"
	roleClient    = 1
	roleServer    = 2

	// maxHandshakePayload bounds frames before the peer is authenticated.
	maxHandshakePayload = 8 << 10
)

// PeerInfo is what the handshake learned about the other end.
type PeerInfo struct {
	NodeID   uint64
	Name     string
	Reason   proto.Reason
	Proto    proto.ProtoID // the sub-protocol the link speaks
	Version  uint8         // the agreed version of Proto
	Features uint64
	Ranges   proto.Ranges // every range the peer announced
	// ClusterID is the peer's cluster id from its HELLO; 0 if it does
	// not know one yet (or predates cluster ids). A node that does not
	// know its own id can learn it from here.
	ClusterID uint64
	// ListenAddr is the peer address the peer says it listens on
	// (session extension); empty if it sent none.
	ListenAddr string
	Addr       net.Addr
	// Pid is the peer process of a unix socket link (SO_PEERCRED); 0 on
	// other links or where the system does not tell.
	Pid int32
}

// ClusterIDError is the error of a handshake refused because the two ends
// belong to different clusters: both know their cluster id and the ids
// differ. Both sides get one: the side that refused and the side that
// received the REJECT. It wraps the CodeClusterID *proto.Error, so
// errors.Is(err, proto.ErrClusterID) holds.
type ClusterIDError struct {
	Local uint64 // this node's cluster id
	Peer  uint64 // the peer's; 0 if its REJECT did not name it
	Err   *proto.Error
}

func (e *ClusterIDError) Error() string { return e.Err.Error() }
func (e *ClusterIDError) Unwrap() error { return e.Err }

func (c *Config) clusterID() uint64 {
	if c.ClusterID == nil {
		return 0
	}
	return c.ClusterID()
}

// hexID formats a cluster id as the spec writes it: 16 hex digits.
func hexID(id uint64) string { return fmt.Sprintf("%016x", id) }

// processCert is the self-signed certificate of this process, made on
// first use and shared by every link whose Config names none.
var processCert = sync.OnceValues(func() (tls.Certificate, error) { return SelfSigned("") })

func (c *Config) certificate() (*tls.Certificate, error) {
	if c.Certificate != nil {
		return c.Certificate, nil
	}
	cert, err := processCert()
	return &cert, err
}

// Connect runs the connecting side of the handshake on conn and returns
// the link. On failure conn is closed.
func Connect(ctx context.Context, conn net.Conn, cfg *Config, reason proto.Reason) (*Link, error) {
	return handshake(ctx, conn, cfg, roleClient, reason)
}

// Accept runs the accepting side of the handshake on conn and returns the
// link. On failure conn is closed.
func Accept(ctx context.Context, conn net.Conn, cfg *Config) (*Link, error) {
	return handshake(ctx, conn, cfg, roleServer, 0)
}

// Dial connects to addr over TCP and runs Connect.
func Dial(ctx context.Context, addr string, cfg *Config, reason proto.Reason) (*Link, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.handshakeTimeout())
	defer cancel()
	var d net.Dialer
	if ip := net.ParseIP(cfg.SourceIP); ip != nil && !ip.IsUnspecified() {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &proto.Error{Code: proto.CodeSock, Detail: "dial " + addr, Err: err}
	}
	return Connect(ctx, conn, cfg, reason)
}

// hs is the state of one handshake.
type hs struct {
	cfg    *Config
	raw    net.Conn
	conn   net.Conn // raw, or the TLS connection over it
	role   byte
	dec    *proto.Decoder
	export []byte   // TLS exporter value; nil on local links
	buf    *bufConn // under the TLS connection; nil on local links
	// id is this node's cluster id, read once so that the HELLO sent and
	// the check of the peer's agree even if it is learned meanwhile.
	id uint64
}

func handshake(ctx context.Context, raw net.Conn, cfg *Config, role byte, reason proto.Reason) (*Link, error) {
	h := &hs{cfg: cfg, raw: raw, conn: raw, role: role, dec: proto.NewDecoder(maxHandshakePayload), id: cfg.clusterID()}
	deadline := time.Now().Add(cfg.handshakeTimeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	raw.SetDeadline(deadline)
	// A cancelled context interrupts blocked I/O by moving the deadline.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	info, err := h.run(reason)
	if err != nil {
		raw.Close()
		if ctx.Err() != nil && !isProto(err) {
			err = &proto.Error{Code: proto.CodeTimeout, Detail: "handshake cancelled", Err: ctx.Err()}
		}
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	h.dec.SetMaxPayload(cfg.MaxPayload)
	info.Addr = raw.RemoteAddr()
	l := newLink(h.conn, h.dec, cfg, info)
	l.buf = h.buf
	return l, nil
}

func isProto(err error) bool {
	var pe *proto.Error
	return errors.As(err, &pe)
}

func (h *hs) run(reason proto.Reason) (PeerInfo, error) {
	if h.cfg.Key != nil {
		if err := h.startTLS(); err != nil {
			return PeerInfo{}, err
		}
	}
	if h.role == roleClient {
		if err := h.sendHello(reason); err != nil {
			return PeerInfo{}, err
		}
		hello, ext, err := h.readHello()
		if err != nil {
			return PeerInfo{}, err
		}
		if hello.Reason != reason {
			return PeerInfo{}, h.reject(proto.Errorf(proto.CodeField, "peer answered with reason %s to our %s", hello.Reason, reason), hello)
		}
		info, err := h.check(hello, ext)
		if err != nil {
			return info, err
		}
		return info, h.admit(info, hello)
	}
	hello, ext, err := h.readHello()
	if err != nil {
		return PeerInfo{}, err
	}
	info, err := h.check(hello, ext)
	if err != nil {
		return info, err
	}
	if !h.cfg.serves(info.Proto) {
		return info, h.reject(proto.Errorf(proto.CodeState, "this endpoint does not serve the %s protocol (reason %s)", info.Proto, hello.Reason), hello)
	}
	if err := h.admit(info, hello); err != nil {
		return info, err
	}
	return info, h.sendHello(hello.Reason)
}

// admit asks Config.Admit about a peer link that passed the checks.
func (h *hs) admit(info PeerInfo, hello proto.Hello) error {
	if h.cfg.Admit == nil || info.Proto != proto.ProtoPeer {
		return nil
	}
	info.Addr = h.raw.RemoteAddr()
	if err := h.cfg.Admit(info); err != nil {
		return h.reject(err, hello)
	}
	return nil
}

func (h *hs) startTLS() error {
	cert, err := h.cfg.certificate()
	if err != nil {
		return &proto.Error{Code: proto.CodeNoLocalKey, Detail: "no TLS certificate", Err: err}
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
		// The certificate is not what authenticates a node: the hello MAC
		// over the exporter is (see the package comment).
		InsecureSkipVerify: true,
	}
	under := h.raw
	if gatherTLSRecords {
		h.buf = newBufConn(h.raw)
		under = h.buf
	}
	var conn *tls.Conn
	if h.role == roleClient {
		conn = tls.Client(under, tc)
	} else {
		conn = tls.Server(under, tc)
	}
	if err := conn.Handshake(); err != nil {
		return ioError(proto.CodeKeyExchange, "TLS handshake", err)
	}
	st := conn.ConnectionState()
	exp, err := st.ExportKeyingMaterial(exporterLabel, nil, 32)
	if err != nil {
		return &proto.Error{Code: proto.CodeKeyExchange, Detail: "TLS exporter", Err: err}
	}
	h.conn, h.export = conn, exp
	return nil
}

func (h *hs) mac(role byte, hello []byte) []byte {
	m := hmac.New(sha256.New, h.cfg.Key)
	m.Write([]byte(macLabel))
	m.Write([]byte{role})
	m.Write(h.export)
	m.Write(hello)
	return m.Sum(nil)
}

func (h *hs) sendHello(reason proto.Reason) error {
	hello := proto.Hello{
		Reason:   reason,
		NodeID:   h.cfg.NodeID,
		Features: h.cfg.Features,
		Ranges:   h.cfg.ranges(),
		Cluster:  h.cfg.Cluster,
		NodeName: h.cfg.NodeName,
	}
	body, authOff := proto.AppendHello(nil, &hello)
	if h.export != nil {
		hello.Auth = h.mac(h.role, body[:authOff])
		body, _ = proto.AppendHello(body[:0], &hello)
	}
	return h.write(proto.OpHello, body)
}

// write sends a session frame with this node's session extensions.
func (h *hs) write(op uint16, body []byte) error {
	f := proto.SessionFrame(op, body)
	f.Ext = proto.AppendSessionExt(nil, proto.SessionExt{ClusterID: h.id, ListenAddr: h.cfg.ListenAddr})
	if _, err := h.conn.Write(proto.AppendFrame(nil, &f)); err != nil {
		return ioError(proto.CodeSock, "write handshake", err)
	}
	return nil
}

// readHello reads the peer's first frame and its session extensions.
// Anything but a well-formed HELLO ends the handshake; a REJECT becomes
// the peer's error.
func (h *hs) readHello() (proto.Hello, proto.SessionExt, error) {
	var none proto.SessionExt
	f, err := h.readFrame()
	if err != nil {
		return proto.Hello{}, none, h.reject(err, proto.Hello{})
	}
	if err := proto.CheckSession(&f.Header); err != nil {
		return proto.Hello{}, none, h.reject(fmt.Errorf("first frame is not a HELLO: %w", err), proto.Hello{})
	}
	ext, err := proto.ParseSessionExt(f.Ext)
	if err != nil {
		if f.Opcode == proto.OpReject {
			return proto.Hello{}, none, err
		}
		return proto.Hello{}, none, h.reject(err, proto.Hello{})
	}
	switch f.Opcode {
	case proto.OpReject:
		rj, err := proto.ParseReject(f.Body)
		if err != nil {
			return proto.Hello{}, none, err
		}
		h.cfg.logger().Error("peer refused the link", "peer", h.raw.RemoteAddr().String(), "code", rj.Code.String(), "reason", rj.Text,
			"peer_versions", rj.Local.String(), "our_versions", rj.Remote.String(), "cluster_id", hexID(h.id), "peer_cluster_id", hexID(ext.ClusterID), "peer_listen_addr", ext.ListenAddr)
		if rj.Code == proto.CodeClusterID {
			return proto.Hello{}, none, &ClusterIDError{Local: h.id, Peer: ext.ClusterID, Err: rj.Err()}
		}
		return proto.Hello{}, none, rj.Err()
	case proto.OpHello:
		hello, authOff, err := proto.ParseHello(f.Body)
		if err != nil {
			return hello, none, h.reject(err, hello)
		}
		if h.export != nil {
			if len(hello.Auth) == 0 {
				return hello, none, h.reject(proto.Errorf(proto.CodeNoRemoteKey, "peer %q sent no proof of the cluster key", hello.NodeName), hello)
			}
			peerRole := byte(roleServer)
			if h.role == roleServer {
				peerRole = roleClient
			}
			if !hmac.Equal(hello.Auth, h.mac(peerRole, f.Body[:authOff])) {
				return hello, none, h.reject(proto.Errorf(proto.CodeKeyExchange, "peer %q does not hold this cluster's key", hello.NodeName), hello)
			}
		}
		return hello, ext, nil
	}
	return proto.Hello{}, none, h.reject(proto.Errorf(proto.CodeState, "expected HELLO, got session opcode %#04x", f.Opcode), proto.Hello{})
}

func (h *hs) readFrame() (proto.Frame, error) {
	for {
		f, ok, err := h.dec.Next()
		if err != nil {
			return f, err
		}
		if ok {
			return f, nil
		}
		n, err := h.conn.Read(h.dec.Buffer())
		h.dec.Advance(n)
		if err != nil && n == 0 {
			if errors.Is(err, io.EOF) {
				return f, proto.Errorf(proto.CodeEOF, "peer closed the connection during the handshake")
			}
			return f, ioError(proto.CodeSock, "read handshake", err)
		}
	}
}

// check validates the peer's hello against this end: cluster name,
// cluster id and version.
func (h *hs) check(hello proto.Hello, ext proto.SessionExt) (PeerInfo, error) {
	info := PeerInfo{NodeID: hello.NodeID, Name: hello.NodeName, Reason: hello.Reason, Proto: hello.Reason.Proto(), Features: hello.Features, Ranges: hello.Ranges,
		ClusterID: ext.ClusterID, ListenAddr: ext.ListenAddr, Pid: peerPid(h.raw)}
	// On local sockets a tool may leave the cluster name empty: it reached
	// the agent through its data directory and need not know the name.
	local := h.cfg.Key == nil && (hello.Cluster == "" || h.cfg.Cluster == "")
	if hello.Cluster != h.cfg.Cluster && !local {
		return info, h.reject(proto.Errorf(proto.CodeCluster, "peer %q is in cluster %q, this node in %q", hello.NodeName, hello.Cluster, h.cfg.Cluster), hello)
	}
	// An id of 0 on either side is "not known yet": a joining node learns
	// the cluster's id from the link (info.ClusterID) and then the log.
	if h.id != 0 && ext.ClusterID != 0 && h.id != ext.ClusterID {
		return info, h.reject(&ClusterIDError{Local: h.id, Peer: ext.ClusterID, Err: proto.Errorf(proto.CodeClusterID,
			"peer %q is of cluster %s, this node of cluster %s", hello.NodeName, hexID(ext.ClusterID), hexID(h.id))}, hello)
	}
	if h.cfg.Key != nil && hello.NodeID == h.cfg.NodeID {
		return info, h.reject(proto.Errorf(proto.CodeNoPeer, "peer %q claims this node's id %d", hello.NodeName, hello.NodeID), hello)
	}
	v, err := proto.Negotiate(info.Proto, h.cfg.ranges(), hello.Ranges)
	if err != nil {
		return info, h.reject(err, hello)
	}
	if h.cfg.opSet(info.Proto) == nil {
		return info, h.reject(proto.Errorf(proto.CodeVersion, "this end has no opcode table of the %s protocol", info.Proto), hello)
	}
	info.Version = v
	return info, nil
}

// reject logs why the link is refused, tells the peer in a REJECT that
// names both sides' versions, and returns err. The caller closes.
func (h *hs) reject(err error, hello proto.Hello) error {
	code := proto.CodeField
	var pe *proto.Error
	if errors.As(err, &pe) {
		code = pe.Code
	}
	if code == proto.CodeSock || code == proto.CodeEOF || code == proto.CodeTimeout {
		return err // nobody to tell
	}
	attrs := []any{"peer", h.raw.RemoteAddr().String(), "peer_name", hello.NodeName, "peer_id", hello.NodeID,
		"err", err.Error(), "our_versions", h.cfg.ranges().String(), "peer_versions", hello.Ranges.String()}
	var ce *ClusterIDError
	if errors.As(err, &ce) {
		attrs = append(attrs, "cluster_id", hexID(ce.Local), "peer_cluster_id", hexID(ce.Peer))
	}
	if r := h.cfg.Refusals; r != nil {
		host := h.raw.RemoteAddr().String()
		if hp, _, err := net.SplitHostPort(host); err == nil {
			host = hp
		}
		r.Log(host, slog.LevelError, "refusing link", attrs...)
	} else {
		h.cfg.logger().Error("refusing link", attrs...)
	}
	rj := proto.Reject{Code: code, Local: h.cfg.ranges(), Remote: hello.Ranges, Text: err.Error()}
	h.raw.SetWriteDeadline(time.Now().Add(time.Second))
	h.write(proto.OpReject, proto.AppendReject(nil, &rj))
	return err
}

// ioError wraps a socket error, turning deadline expiry into CodeTimeout.
func ioError(code proto.Code, what string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &proto.Error{Code: proto.CodeTimeout, Detail: what + ": peer did not answer in time", Err: err}
	}
	if isProto(err) {
		return err
	}
	return &proto.Error{Code: code, Detail: what, Err: err}
}
