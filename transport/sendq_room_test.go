package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
)

// room waits while a frame would not fit, without queueing anything, and
// returns once the writer drained the queue; a closed queue fails it.
func TestSendQueueRoom(t *testing.T) {
	q := newSendQueue(200)
	f := proto.Frame{Body: make([]byte, 60)}
	if err := q.push(context.Background(), &f, nil); err != nil {
		t.Fatal(err)
	}
	n := proto.HeaderSize + 60
	if err := q.room(context.Background(), 1, nil); err != nil {
		t.Fatalf("room for 1 byte under the limit: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.room(ctx, n, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("room over the limit: %v", err)
	}
	if q.bytes() != n {
		t.Fatalf("room queued something: %d bytes", q.bytes())
	}
	got := make(chan error, 1)
	go func() { got <- q.room(context.Background(), n, nil) }()
	q.done(q.take(nil))
	if err := <-got; err != nil {
		t.Fatalf("room after the drain: %v", err)
	}
	q.close(ErrClosed, false)
	if err := q.room(context.Background(), 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("room on a closed queue: %v", err)
	}
}
