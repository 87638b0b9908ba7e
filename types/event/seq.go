package event

// SeqShift is the number of low bits of a Seq that number an event within
// its log entry: a batch entry produces many events, and each needs its own
// Seq.
const SeqShift = 20

// SeqOf returns the Seq of the event at place k (0-based, k < 1<<SeqShift)
// among the events log entry index produced: index<<SeqShift | k.
func SeqOf(index uint64, k uint32) uint64 {
	return index<<SeqShift | uint64(k)&(1<<SeqShift-1)
}

// SeqIndex returns the log index of the entry that produced the event with
// this Seq.
func SeqIndex(seq uint64) uint64 { return seq >> SeqShift }
