package replicated

import (
	"context"
	"testing"
	"time"
)

func TestAttemptsReuseUntilDeadline(t *testing.T) {
	a := newAttempts(context.Background(), time.Hour)
	defer a.close()
	c1 := a.start()
	a.stop()
	c2 := a.start()
	a.stop()
	if c1 != c2 || c2.Err() != nil {
		t.Fatalf("a stopped attempt's context was not reused live: same %v, err %v", c1 == c2, c2.Err())
	}
}

func TestAttemptsDeadline(t *testing.T) {
	a := newAttempts(context.Background(), 5*time.Millisecond)
	defer a.close()
	c1 := a.start()
	select {
	case <-c1.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt's context did not end at its deadline")
	}
	a.stop()
	c2 := a.start()
	defer a.stop()
	if c2 == c1 || c2.Err() != nil {
		t.Fatalf("after a deadline, start returned the old or an ended context (err %v)", c2.Err())
	}
}

func TestAttemptsParent(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	a := newAttempts(parent, time.Hour)
	defer a.close()
	c := a.start()
	cancel()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt's context outlived its parent")
	}
	a.stop()
}
