! rankpool for Fortran 2008: the pool, map and map_async, results, errors and
! rp_raise, through ISO_C_BINDING. Built and installed (rankpool.mod,
! librankpool_fortran) when configure finds a Fortran compiler.
!
!     use rankpool
!     type(c_ptr) :: pool
!     real(c_double), target :: x(n), y(n)
!     rc = rp_pool_create(pool)                      ! local, or mpi under mpirun
!     if (.not. rp_pool_is_master(pool)) then ...    ! a rank that served: free, stop
!     rc = rp_map(pool, c_funloc(task), c_loc(x), size(x, kind=c_size_t), &
!                 c_sizeof(x(1)), c_loc(y), c_sizeof(y(1)), err=err)
!
! A task is a bind(C) function of the C signature int task(const void *in,
! void *out, rp_ctx_t *ctx); its first two arguments may be declared as the item
! types themselves (passed by reference):
!
!     integer(c_int) function task(x, y, ctx) bind(C)
!         real(c_double), intent(in) :: x
!         real(c_double), intent(out) :: y
!         type(c_ptr), value :: ctx
!         if (x < 0) then
!             task = rp_raise(ctx, 1, 'negative input')   ! fails this item
!             return
!         end if
!         y = sqrt(x)
!         task = 0
!     end function
!
! Arrays handed to rp_map need the target attribute (c_loc). Items are the
! bytes of one array element: numbers or bind(C) derived types, no allocatable
! or pointer components. Indices (rp_error_t%index, rp_ctx_index, rp_result_error's
! i) count from 0, as in C: item i is x(i + 1). Codes and semantics are rankpool.h's.
! Link with -lrankpool_fortran -lrankpool (pkg-config rankpool-fortran).
module rankpool
    use, intrinsic :: iso_c_binding
    implicit none
    private

    public :: c_ptr, c_funptr, c_null_ptr, c_loc, c_funloc, c_sizeof, c_size_t, c_int, &
              c_double, c_long, c_bool, c_char, c_associated

    ! ---- status codes (rankpool.h's RP_ERRNO_MAP) ----------------------------------
    integer(c_int), parameter, public :: RP_OK = 0, RP_DONE = 1, RP_EINVAL = -1, &
        RP_ENOMEM = -2, RP_ETIMEDOUT = -3, RP_ENOTREADY = -4, RP_ETASK = -5, &
        RP_EWORKER = -6, RP_ECANCELED = -7, RP_ECLOSED = -8, RP_EINIT = -9, &
        RP_EBACKEND = -10, RP_ESYS = -11, RP_EMPI = -12, RP_EPROTO = -13, &
        RP_EFNREF = -14, RP_ENOTMASTER = -15, RP_EBROKEN = -16, RP_EFORK = -17, &
        RP_EDEADLK = -18, RP_ETASKTIMEOUT = -19, RP_EJOURNAL = -20
    real(c_double), parameter, public :: RP_FOREVER = -1.0_c_double

    ! ---- rankpool.h's structs, field for field -------------------------------------
    type, bind(C), public :: rp_error_t
        integer(c_int) :: code = 0          ! RP_ETASK, RP_EWORKER, ...
        integer(c_int) :: task_code = 0     ! what the task returned
        integer(c_size_t) :: index = 0      ! which input item (from 0)
        integer(c_int) :: worker = -1
        integer(c_int) :: signal = 0
        integer(c_int) :: exit_status = -1
        character(kind=c_char) :: host(64) = c_null_char
        character(kind=c_char) :: message(256) = c_null_char
    end type rp_error_t

    type, bind(C), public :: rp_pool_opts_t
        type(c_ptr) :: backend = c_null_ptr
        integer(c_int) :: workers = 0
        type(c_funptr) :: initializer = c_null_funptr
        type(c_ptr) :: initarg = c_null_ptr
        integer(c_size_t) :: initarg_size = 0
        integer(c_long) :: max_tasks_per_worker = 0
        logical(c_bool) :: bind = .false.
        type(c_ptr) :: comm = c_null_ptr
        real(c_double) :: task_timeout = 0.0_c_double
    end type rp_pool_opts_t

    type, bind(C), public :: rp_map_opts_t
        integer(c_size_t) :: chunksize = 0
        type(c_funptr) :: callback = c_null_funptr
        type(c_funptr) :: error_callback = c_null_funptr
        type(c_ptr) :: userdata = c_null_ptr
        real(c_double) :: task_timeout = 0.0_c_double
        integer(c_int) :: retries = 0
        logical(c_bool) :: retry_raised = .false.
        logical(c_bool) :: progress = .false.  ! a progress bar on stderr
        type(c_ptr) :: journal = c_null_ptr    ! a NUL-terminated file name: resume
        integer(c_size_t) :: buffersize = 0
    end type rp_map_opts_t

    public :: rp_pool_create, rp_pool_is_master, rp_pool_size, rp_pool_backend, &
              rp_pool_close, rp_pool_join, rp_pool_terminate, rp_pool_free, &
              rp_map, rp_map_async, &
              rp_result_wait, rp_result_ready, rp_result_successful, rp_result_get, &
              rp_result_nerrors, rp_result_error, rp_result_free, &
              rp_raise, rp_ctx_worker, rp_ctx_index, &
              rp_strerror, rp_err_name, rp_error_message, rp_error_host

    ! ---- the C functions (those whose Fortran form differs are c_*, private) --------
    interface
        integer(c_int) function c_pool_create_ex(pool, opts, err) &
                bind(C, name='rp_pool_create_ex')
            import :: c_ptr, c_int, rp_pool_opts_t, rp_error_t
            type(c_ptr), intent(out) :: pool
            type(rp_pool_opts_t), intent(in) :: opts
            type(rp_error_t), intent(out) :: err
        end function
        logical(c_bool) function c_pool_is_master(pool) bind(C, name='rp_pool_is_master')
            import :: c_ptr, c_bool
            type(c_ptr), value :: pool
        end function
        !> The number of workers, or RP_EINVAL for a null pool.
        integer(c_int) function rp_pool_size(pool) bind(C, name='rp_pool_size')
            import :: c_ptr, c_int
            type(c_ptr), value :: pool
        end function
        type(c_ptr) function c_pool_backend(pool) bind(C, name='rp_pool_backend')
            import :: c_ptr
            type(c_ptr), value :: pool
        end function
        !> Refuses new work (RP_ECLOSED); queued work still finishes.
        integer(c_int) function rp_pool_close(pool) bind(C, name='rp_pool_close')
            import :: c_ptr, c_int
            type(c_ptr), value :: pool
        end function
        !> Waits for all work and for the workers to exit (after close or terminate).
        integer(c_int) function rp_pool_join(pool) bind(C, name='rp_pool_join')
            import :: c_ptr, c_int
            type(c_ptr), value :: pool
        end function
        !> Stops the workers at once; unfinished results fail with RP_ECANCELED.
        integer(c_int) function rp_pool_terminate(pool) bind(C, name='rp_pool_terminate')
            import :: c_ptr, c_int
            type(c_ptr), value :: pool
        end function
        subroutine c_pool_free(pool) bind(C, name='rp_pool_free')
            import :: c_ptr
            type(c_ptr), value :: pool
        end subroutine
        integer(c_int) function c_map(pool, fn, in, n, in_size, out, out_size, opts, err) &
                bind(C, name='rp_map')
            import :: c_ptr, c_funptr, c_size_t, c_int, rp_map_opts_t, rp_error_t
            type(c_ptr), value :: pool, in, out
            type(c_funptr), value :: fn
            integer(c_size_t), value :: n, in_size, out_size
            type(rp_map_opts_t), intent(in) :: opts
            type(rp_error_t), intent(out) :: err
        end function
        integer(c_int) function c_map_async(pool, fn, in, n, in_size, out, out_size, opts, &
                res) bind(C, name='rp_map_async')
            import :: c_ptr, c_funptr, c_size_t, c_int, rp_map_opts_t
            type(c_ptr), value :: pool, in, out
            type(c_funptr), value :: fn
            integer(c_size_t), value :: n, in_size, out_size
            type(rp_map_opts_t), intent(in) :: opts
            type(c_ptr), intent(out) :: res
        end function
        !> Waits until ready or timeout (seconds; RP_FOREVER; 0 polls).
        !> Returns RP_OK (ready) or RP_ETIMEDOUT.
        integer(c_int) function rp_result_wait(res, timeout) bind(C, name='rp_result_wait')
            import :: c_ptr, c_int, c_double
            type(c_ptr), value :: res
            real(c_double), value :: timeout
        end function
        logical(c_bool) function c_result_ready(res) bind(C, name='rp_result_ready')
            import :: c_ptr, c_bool
            type(c_ptr), value :: res
        end function
        !> 1 if every item succeeded, 0 if some failed, RP_ENOTREADY before ready.
        integer(c_int) function rp_result_successful(res) &
                bind(C, name='rp_result_successful')
            import :: c_ptr, c_int
            type(c_ptr), value :: res
        end function
        integer(c_int) function c_result_get(res, timeout, err) bind(C, name='rp_result_get')
            import :: c_ptr, c_int, c_double, rp_error_t
            type(c_ptr), value :: res
            real(c_double), value :: timeout
            type(rp_error_t), intent(out) :: err
        end function
        !> How many items failed (0 before ready).
        integer(c_size_t) function rp_result_nerrors(res) bind(C, name='rp_result_nerrors')
            import :: c_ptr, c_size_t
            type(c_ptr), value :: res
        end function
        type(c_ptr) function c_result_error(res, i) bind(C, name='rp_result_error')
            import :: c_ptr, c_size_t
            type(c_ptr), value :: res
            integer(c_size_t), value :: i
        end function
        subroutine c_result_free(res) bind(C, name='rp_result_free')
            import :: c_ptr
            type(c_ptr), value :: res
        end subroutine
        integer(c_int) function c_raise_str(ctx, code, msg) bind(C, name='rp_raise_str')
            import :: c_ptr, c_int, c_char
            type(c_ptr), value :: ctx
            integer(c_int), value :: code
            character(kind=c_char), intent(in) :: msg(*)
        end function
        !> The running worker's number (0..size-1), inside a task.
        integer(c_int) function rp_ctx_worker(ctx) bind(C, name='rp_ctx_worker')
            import :: c_ptr, c_int
            type(c_ptr), value :: ctx
        end function
        !> The input index (from 0) of the running item, inside a task.
        integer(c_size_t) function rp_ctx_index(ctx) bind(C, name='rp_ctx_index')
            import :: c_ptr, c_size_t
            type(c_ptr), value :: ctx
        end function
        type(c_ptr) function c_strerror(code) bind(C, name='rp_strerror')
            import :: c_ptr, c_int
            integer(c_int), value :: code
        end function
        type(c_ptr) function c_err_name(code) bind(C, name='rp_err_name')
            import :: c_ptr, c_int
            integer(c_int), value :: code
        end function
        integer(c_size_t) function c_strlen(s) bind(C, name='strlen')
            import :: c_ptr, c_size_t
            type(c_ptr), value :: s
        end function
    end interface

contains

    ! ---- strings between C and Fortran ---------------------------------------------

    ! A C string as a Fortran string ('' for a null pointer).
    function from_c(p) result(s)
        type(c_ptr), intent(in) :: p
        character(len=:), allocatable :: s
        character(kind=c_char), pointer :: chars(:)
        integer :: i, n
        if (.not. c_associated(p)) then
            s = ''
            return
        end if
        n = int(c_strlen(p))
        call c_f_pointer(p, chars, [n])
        allocate (character(len=n) :: s)
        do i = 1, n
            s(i:i) = chars(i)
        end do
    end function

    ! A NUL-terminated char array (rp_error_t's fields) as a Fortran string.
    function from_chars(a) result(s)
        character(kind=c_char), intent(in) :: a(:)
        character(len=:), allocatable :: s
        integer :: i, n
        n = 0
        do while (n < size(a))
            if (a(n + 1) == c_null_char) exit
            n = n + 1
        end do
        allocate (character(len=n) :: s)
        do i = 1, n
            s(i:i) = a(i)
        end do
    end function

    ! ---- pool ----------------------------------------------------------------------

    !> Creates a pool (collective under mpirun: every rank calls it). backend:
    !> 'local' or 'mpi' (default: $RP_BACKEND, else mpi under mpirun/srun, else
    !> local); workers: 0 or absent for the default; opts: every option of
    !> rp_pool_opts_t (backend and workers given here win); err: why it failed.
    !> Returns RP_OK or a negative code; pool is c_null_ptr on failure.
    integer(c_int) function rp_pool_create(pool, backend, workers, opts, err) result(rc)
        type(c_ptr), intent(out) :: pool
        character(len=*), intent(in), optional :: backend
        integer, intent(in), optional :: workers
        type(rp_pool_opts_t), intent(in), optional :: opts
        type(rp_error_t), intent(out), optional :: err
        type(rp_pool_opts_t) :: o
        type(rp_error_t) :: e
        character(kind=c_char, len=:), allocatable, target :: name
        if (present(opts)) o = opts
        if (present(backend)) then
            name = trim(backend)//c_null_char
            o%backend = c_loc(name)
        end if
        if (present(workers)) o%workers = int(workers, c_int)
        rc = c_pool_create_ex(pool, o, e)
        if (present(err)) err = e
    end function

    !> True on the process that submits work (always, for the local backend).
    logical function rp_pool_is_master(pool)
        type(c_ptr), intent(in) :: pool
        rp_pool_is_master = logical(c_pool_is_master(pool))
    end function

    !> The backend's name: 'local' or 'mpi'.
    function rp_pool_backend(pool) result(name)
        type(c_ptr), intent(in) :: pool
        character(len=:), allocatable :: name
        name = from_c(c_pool_backend(pool))
    end function

    !> Terminates if needed, joins, releases; pool becomes c_null_ptr.
    subroutine rp_pool_free(pool)
        type(c_ptr), intent(inout) :: pool
        call c_pool_free(pool)
        pool = c_null_ptr
    end subroutine

    ! ---- work ----------------------------------------------------------------------

    !> Applies fn (c_funloc of a bind(C) task) to the n items at in (in_size bytes
    !> each), writing n outputs of out_size bytes at out, in input order; blocks.
    !> chunksize: items per dispatch (absent or 0: automatic). err: the lowest
    !> failing item. progress: a bar on stderr. journal: a file keeping finished
    !> items, so that a rerun runs only the rest (RP_EJOURNAL: another job's file).
    !> Returns RP_OK or that item's code; every successful output is written
    !> either way.
    integer(c_int) function rp_map(pool, fn, in, n, in_size, out, out_size, chunksize, &
                                   err, progress, journal) result(rc)
        type(c_ptr), intent(in) :: pool, in, out
        type(c_funptr), intent(in) :: fn
        integer(c_size_t), intent(in) :: n, in_size, out_size
        integer(c_size_t), intent(in), optional :: chunksize
        type(rp_error_t), intent(out), optional :: err
        logical, intent(in), optional :: progress
        character(*), intent(in), optional :: journal
        type(rp_map_opts_t) :: o
        type(rp_error_t) :: e
        character(kind=c_char), allocatable, target :: path(:)
        if (present(chunksize)) o%chunksize = chunksize
        if (present(progress)) o%progress = logical(progress, c_bool)
        if (present(journal)) then
            call c_string(journal, path)
            o%journal = c_loc(path)
        end if
        rc = c_map(pool, fn, in, n, in_size, out, out_size, o, e)
        if (present(err)) err = e
    end function

    !> Like rp_map, but returns at once with res; in and out belong to the pool
    !> (keep them alive and untouched) until res is ready. Free res with
    !> rp_result_free.
    integer(c_int) function rp_map_async(pool, fn, in, n, in_size, out, out_size, res, &
                                         chunksize, progress, journal) result(rc)
        type(c_ptr), intent(in) :: pool, in, out
        type(c_funptr), intent(in) :: fn
        integer(c_size_t), intent(in) :: n, in_size, out_size
        type(c_ptr), intent(out) :: res
        integer(c_size_t), intent(in), optional :: chunksize
        logical, intent(in), optional :: progress
        character(*), intent(in), optional :: journal
        type(rp_map_opts_t) :: o
        character(kind=c_char), allocatable, target :: path(:)
        if (present(chunksize)) o%chunksize = chunksize
        if (present(progress)) o%progress = logical(progress, c_bool)
        if (present(journal)) then ! read (and the name copied) at submission
            call c_string(journal, path)
            o%journal = c_loc(path)
        end if
        rc = c_map_async(pool, fn, in, n, in_size, out, out_size, o, res)
    end function

    ! A NUL-terminated copy of s for C.
    subroutine c_string(s, path)
        character(*), intent(in) :: s
        character(kind=c_char), allocatable, intent(out) :: path(:)
        integer :: i
        allocate(path(len(s) + 1))
        do i = 1, len(s)
            path(i) = s(i:i)
        end do
        path(len(s) + 1) = c_null_char
    end subroutine

    ! ---- results -------------------------------------------------------------------

    !> True once every item has been processed, failed ones included.
    logical function rp_result_ready(res)
        type(c_ptr), intent(in) :: res
        rp_result_ready = logical(c_result_ready(res))
    end function

    !> Waits up to timeout seconds; RP_OK, RP_ETIMEDOUT (res stays valid), or the
    !> lowest failing item's code with err filled.
    integer(c_int) function rp_result_get(res, timeout, err) result(rc)
        type(c_ptr), intent(in) :: res
        real(c_double), intent(in) :: timeout
        type(rp_error_t), intent(out), optional :: err
        type(rp_error_t) :: e
        rc = c_result_get(res, timeout, e)
        if (present(err)) err = e
    end function

    !> The i-th failure (i from 0, in index order) into err; false if there is none.
    logical function rp_result_error(res, i, err)
        type(c_ptr), intent(in) :: res
        integer(c_size_t), intent(in) :: i
        type(rp_error_t), intent(out) :: err
        type(c_ptr) :: p
        type(rp_error_t), pointer :: e
        p = c_result_error(res, i)
        rp_result_error = c_associated(p)
        if (rp_result_error) then
            call c_f_pointer(p, e)
            err = e
        end if
    end function

    !> Frees a result (waiting for it first if not ready); res becomes c_null_ptr.
    subroutine rp_result_free(res)
        type(c_ptr), intent(inout) :: res
        call c_result_free(res)
        res = c_null_ptr
    end subroutine

    ! ---- inside a task -------------------------------------------------------------

    !> Describes the running task's failure; use as `task = rp_raise(ctx, code, msg)`
    !> then return. Returns code, or RP_ETASK when code is 0.
    integer(c_int) function rp_raise(ctx, code, msg)
        type(c_ptr), intent(in) :: ctx
        integer, intent(in) :: code
        character(len=*), intent(in) :: msg
        rp_raise = c_raise_str(ctx, int(code, c_int), trim(msg)//c_null_char)
    end function

    ! ---- errors --------------------------------------------------------------------

    !> A text for any code.
    function rp_strerror(code) result(s)
        integer, intent(in) :: code
        character(len=:), allocatable :: s
        s = from_c(c_strerror(int(code, c_int)))
    end function

    !> The code's symbolic name, e.g. 'RP_ETIMEDOUT'.
    function rp_err_name(code) result(s)
        integer, intent(in) :: code
        character(len=:), allocatable :: s
        s = from_c(c_err_name(int(code, c_int)))
    end function

    !> An error's message (the task's rp_raise text, or what the pool knows).
    function rp_error_message(err) result(s)
        type(rp_error_t), intent(in) :: err
        character(len=:), allocatable :: s
        s = from_chars(err%message)
    end function

    !> The host an error happened on.
    function rp_error_host(err) result(s)
        type(rp_error_t), intent(in) :: err
        character(len=:), allocatable :: s
        s = from_chars(err%host)
    end function
end module rankpool
