// A cuBLAS GEMM (plus a bias kernel of our own) and a cuDNN convolution, with C entry points for ctypes.
// Every entry point returns 0 on success, else an error code; cld_error_text() names the last failure.
#include <cstdio>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

namespace {

thread_local char g_error[256] = "";

int fail(int code, const char* what, const char* detail) {
  std::snprintf(g_error, sizeof g_error, "%s: %s", what, detail);
  return code == 0 ? -1 : code;
}

#define CLD_CUDA(call)                                                    \
  do {                                                                    \
    cudaError_t e_ = (call);                                              \
    if (e_ != cudaSuccess) { rc = fail(1000 + e_, #call, cudaGetErrorString(e_)); goto done; } \
  } while (0)
#define CLD_CUBLAS(call)                                                  \
  do {                                                                    \
    cublasStatus_t s_ = (call);                                           \
    if (s_ != CUBLAS_STATUS_SUCCESS) { rc = fail(2000 + s_, #call, cublasGetStatusString(s_)); goto done; } \
  } while (0)
#define CLD_CUDNN(call)                                                   \
  do {                                                                    \
    cudnnStatus_t s_ = (call);                                            \
    if (s_ != CUDNN_STATUS_SUCCESS) { rc = fail(3000 + s_, #call, cudnnGetErrorString(s_)); goto done; } \
  } while (0)

// out[i, j] += bias[j] on an m x n row-major matrix: our own kernel, so the library carries SASS to audit.
__global__ void add_bias(float* out, const float* bias, int m, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < m * n) out[i] += bias[i % n];
}

}  // namespace

extern "C" {

const char* cld_error_text(void) { return g_error; }

// Runtime versions of the loaded libraries; needs no GPU.
int cld_library_versions(int* cublas_major, int* cublas_minor, int* cublas_patch, unsigned long long* cudnn) {
  int rc = 0;
  CLD_CUBLAS(cublasGetProperty(MAJOR_VERSION, cublas_major));
  CLD_CUBLAS(cublasGetProperty(MINOR_VERSION, cublas_minor));
  CLD_CUBLAS(cublasGetProperty(PATCH_LEVEL, cublas_patch));
  *cudnn = static_cast<unsigned long long>(cudnnGetVersion());
done:
  return rc;
}

// C[m, n] = A[m, k] @ B[k, n] + bias[n], all row-major float32, exact FP32 (no TF32).
int cld_gemm_bias(int m, int n, int k, const float* a, const float* b, const float* bias, float* c) {
  int rc = 0;
  float *da = nullptr, *db = nullptr, *dbias = nullptr, *dc = nullptr;
  cublasHandle_t handle = nullptr;
  const float one = 1.0f, zero = 0.0f;
  const size_t sa = sizeof(float) * m * k, sb = sizeof(float) * k * n, sc = sizeof(float) * m * n;
  CLD_CUDA(cudaMalloc(&da, sa));
  CLD_CUDA(cudaMalloc(&db, sb));
  CLD_CUDA(cudaMalloc(&dbias, sizeof(float) * n));
  CLD_CUDA(cudaMalloc(&dc, sc));
  CLD_CUDA(cudaMemcpy(da, a, sa, cudaMemcpyHostToDevice));
  CLD_CUDA(cudaMemcpy(db, b, sb, cudaMemcpyHostToDevice));
  CLD_CUDA(cudaMemcpy(dbias, bias, sizeof(float) * n, cudaMemcpyHostToDevice));
  CLD_CUBLAS(cublasCreate(&handle));
  CLD_CUBLAS(cublasSetMathMode(handle, CUBLAS_PEDANTIC_MATH));
  // cuBLAS is column-major: a row-major C = A @ B is the column-major C^T = B^T @ A^T.
  CLD_CUBLAS(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, db, n, da, k, &zero, dc, n));
  add_bias<<<(m * n + 255) / 256, 256>>>(dc, dbias, m, n);
  CLD_CUDA(cudaGetLastError());
  CLD_CUDA(cudaMemcpy(c, dc, sc, cudaMemcpyDeviceToHost));
done:
  if (handle) cublasDestroy(handle);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dbias);
  cudaFree(dc);
  return rc;
}

// y = conv2d(x, w), NCHW float32, cross-correlation (as in deep learning), zero padding `pad`, stride 1,
// FMA math only (no TF32).  out_shape receives N, K, H', W'; y must hold their product.
int cld_conv2d(int n, int c, int h, int w, int k, int r, int s, int pad, const float* x, const float* wt, float* y,
               int* out_shape) {
  int rc = 0;
  cudnnHandle_t handle = nullptr;
  cudnnTensorDescriptor_t xd = nullptr, yd = nullptr;
  cudnnFilterDescriptor_t wd = nullptr;
  cudnnConvolutionDescriptor_t cd = nullptr;
  float *dx = nullptr, *dw = nullptr, *dy = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int on = 0, ok = 0, oh = 0, ow = 0;
  const float one = 1.0f, zero = 0.0f;
  const cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  CLD_CUDNN(cudnnCreate(&handle));
  CLD_CUDNN(cudnnCreateTensorDescriptor(&xd));
  CLD_CUDNN(cudnnCreateTensorDescriptor(&yd));
  CLD_CUDNN(cudnnCreateFilterDescriptor(&wd));
  CLD_CUDNN(cudnnCreateConvolutionDescriptor(&cd));
  CLD_CUDNN(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
  CLD_CUDNN(cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k, c, r, s));
  CLD_CUDNN(cudnnSetConvolution2dDescriptor(cd, pad, pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CLD_CUDNN(cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH));
  CLD_CUDNN(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &on, &ok, &oh, &ow));
  CLD_CUDNN(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, on, ok, oh, ow));
  CLD_CUDNN(cudnnGetConvolutionForwardWorkspaceSize(handle, xd, wd, cd, yd, algo, &workspace_bytes));
  CLD_CUDA(cudaMalloc(&dx, sizeof(float) * n * c * h * w));
  CLD_CUDA(cudaMalloc(&dw, sizeof(float) * k * c * r * s));
  CLD_CUDA(cudaMalloc(&dy, sizeof(float) * on * ok * oh * ow));
  if (workspace_bytes) CLD_CUDA(cudaMalloc(&workspace, workspace_bytes));
  CLD_CUDA(cudaMemcpy(dx, x, sizeof(float) * n * c * h * w, cudaMemcpyHostToDevice));
  CLD_CUDA(cudaMemcpy(dw, wt, sizeof(float) * k * c * r * s, cudaMemcpyHostToDevice));
  CLD_CUDNN(cudnnConvolutionForward(handle, &one, xd, dx, wd, dw, cd, algo, workspace, workspace_bytes, &zero, yd, dy));
  CLD_CUDA(cudaMemcpy(y, dy, sizeof(float) * on * ok * oh * ow, cudaMemcpyDeviceToHost));
  out_shape[0] = on;
  out_shape[1] = ok;
  out_shape[2] = oh;
  out_shape[3] = ow;
done:
  if (cd) cudnnDestroyConvolutionDescriptor(cd);
  if (wd) cudnnDestroyFilterDescriptor(wd);
  if (xd) cudnnDestroyTensorDescriptor(xd);
  if (yd) cudnnDestroyTensorDescriptor(yd);
  if (handle) cudnnDestroy(handle);
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
  cudaFree(workspace);
  return rc;
}

int cld_device_count(void) {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}
}
