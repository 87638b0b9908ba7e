// Package durable holds the file-system steps that make a write survive
// a crash, which several packages that keep files of their own need: a
// directory's fsync after a file in it is created, renamed or removed.
package durable
