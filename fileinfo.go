package tokenstore

import (
	"context"
	"os"

	bolt "go.etcd.io/bbolt"
)

// FileInfo describes the bbolt file under a store, for operators deciding
// whether to compact it.
type FileInfo struct {
	Path      string       // the file's path
	Size      int64        // bytes on disk
	PageSize  int          // bbolt page size in bytes
	Pages     int          // pages up to the file's high-water mark, free ones included
	FreePages int          // pages on the freelist: reused by later writes; only compaction shrinks the file
	Buckets   []BucketInfo // one per bucket, in name order
}

// BucketInfo describes one bbolt bucket of the file.
type BucketInfo struct {
	Name  string // meta, tokens, ids, subjects, expiry, tombstones, tombdue or families
	Keys  int    // key/value pairs
	Depth int    // levels of its B+tree
	Pages int    // branch, leaf and overflow pages (0 for a bucket small enough to be inlined)
	InUse int    // bytes of those pages holding data
}

// FileInfo reports the file's size, pages and buckets from one read
// transaction. It works on a ReadOnly store.
func (db *DB) FileInfo(ctx context.Context) (FileInfo, error) {
	if err := db.begin(ctx, false); err != nil {
		return FileInfo{}, wrap("file info", err)
	}
	fi := FileInfo{Path: db.path}
	err := view(db.bolt, func(tx *bolt.Tx) error {
		fi.PageSize = tx.DB().Info().PageSize
		fi.Pages = int(tx.Size() / int64(fi.PageSize))
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			s := b.Stats()
			fi.Buckets = append(fi.Buckets, BucketInfo{
				Name:  string(name),
				Keys:  s.KeyN,
				Depth: s.Depth,
				Pages: s.BranchPageN + s.BranchOverflowN + s.LeafPageN + s.LeafOverflowN,
				InUse: s.BranchInuse + s.LeafInuse,
			})
			return nil
		})
	})
	if err != nil {
		return FileInfo{}, wrap("file info", boltErr(err))
	}
	fi.FreePages = db.bolt.Stats().FreePageN
	st, err := os.Stat(db.path)
	if err != nil {
		return FileInfo{}, wrap("file info", err)
	}
	fi.Size = st.Size()
	return fi, nil
}
