package coordinator

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func grpcDialOpts() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
}
