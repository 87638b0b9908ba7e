package attempt

import (
	"context"
	"testing"
	"time"
)

func TestAttemptsReuseUntilDeadline(t *testing.T) {
	a := New(context.Background(), time.Hour)
	defer a.Close()
	c1 := a.Start()
	a.Stop()
	c2 := a.Start()
	a.Stop()
	if c1 != c2 || c2.Err() != nil {
		t.Fatalf("a stopped attempt's context was not reused live: same %v, err %v", c1 == c2, c2.Err())
	}
}

func TestAttemptsDeadline(t *testing.T) {
	a := New(context.Background(), 5*time.Millisecond)
	defer a.Close()
	c1 := a.Start()
	select {
	case <-c1.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt's context did not end at its deadline")
	}
	a.Stop()
	c2 := a.Start()
	defer a.Stop()
	if c2 == c1 || c2.Err() != nil {
		t.Fatalf("after a deadline, start returned the old or an ended context (err %v)", c2.Err())
	}
}

func TestAttemptsParent(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	a := New(parent, time.Hour)
	defer a.Close()
	c := a.Start()
	cancel()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt's context outlived its parent")
	}
	a.Stop()
}
